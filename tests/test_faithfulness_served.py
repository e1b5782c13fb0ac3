"""Faithfulness served by the real server, on the demo's real classifier: the served AOPCs equal
a direct computation, words ranked here from the served raw scores and every variant text
predicted on its own (deleting a word's characters gives the tokens of deleting its tokens for
this WordPiece tokenizer)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from serving import ServerThread

from gradlight.client import Client
from gradlight.demo import assertion_data
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.words import token_words, words
from gradlight.runtime.explanation.methods import text_seed
from gradlight.runtime.serving.server import ServerSettings
from gradlight.runtime.settings import EngineSettings

FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)
SEED = 11


@pytest.fixture(scope="module")
def demo_client(minilm):
    _, artifact = minilm
    engine = Engine(artifact, EngineSettings(provider="cpu"))
    with (
        ServerThread({"assertion": engine}, ServerSettings(port=0)) as server,
        Client(server.address, timeout=600) as client,
    ):
        yield client


def _ranked_words(result, column):
    """The words owning a token, with their summed raw scores, in text order."""
    spans = words(result.text)
    tokens = [token for token in result.tokens if not token.special]
    owners = token_words(spans, [token.start for token in tokens])
    totals: dict[int, float] = {}
    for token, owner in zip(tokens, owners, strict=True):
        if owner is not None:
            totals[owner] = totals.get(owner, 0.0) + token.raw_scores[column]
    return [(spans[w], totals[w]) for w in sorted(totals)]


def _without(text, spans):
    kept, position = [], 0
    for start, end in sorted(spans):
        kept.append(text[position:start])
        position = end
    kept.append(text[position:])
    return " ".join(part.strip() for part in kept if part.strip())


def _aopc(client, text, label_index, spans_in_order, p_full):
    comprehensiveness, sufficiency = [], []
    for fraction in FRACTIONS:
        count = min(
            max(math.ceil(round(fraction * len(spans_in_order), 9)), 1), len(spans_in_order)
        )
        top = spans_in_order[:count]
        rest = spans_in_order[count:]
        texts = [_without(text, top), _without(text, rest)]
        probabilities = [r.probabilities[label_index] for r in client.predict(texts).results]
        comprehensiveness.append(p_full - probabilities[0])
        sufficiency.append(p_full - probabilities[1] if rest else 0.0)
    return float(np.mean(comprehensiveness)), float(np.mean(sufficiency))


def test_served_faithfulness_equals_a_direct_computation(demo_client):
    notes = assertion_data.load("heldout")[:6]
    texts = [note.text for note in notes]
    response = demo_client.attribute(texts, raw_scores=True, faithfulness=True, seed=SEED)
    for text, result in zip(texts, response.results, strict=True):
        assert result.seed == SEED and result.method == "input_x_gradient"
        found = result.faithfulness
        assert list(found.fractions) == pytest.approx(FRACTIONS)
        for column in range(len(result.labels)):
            ranked = _ranked_words(result, column)
            assert found.words == len(ranked)
            p_full = result.probabilities[column]
            order = sorted(range(len(ranked)), key=lambda i: -ranked[i][1])  # ties: text order
            expected = _aopc(demo_client, text, column, [ranked[i][0] for i in order], p_full)
            assert found.comprehensiveness[column] == pytest.approx(expected[0], abs=2e-5)
            assert found.sufficiency[column] == pytest.approx(expected[1], abs=2e-5)
            ids = np.array([token.token_id for token in result.tokens], dtype=np.int64)
            permutation = np.random.default_rng(text_seed(SEED, ids)).permutation(len(ranked))
            random = _aopc(demo_client, text, column, [ranked[i][0] for i in permutation], p_full)
            assert found.random_comprehensiveness[column] == pytest.approx(random[0], abs=2e-5)
            assert found.random_sufficiency[column] == pytest.approx(random[1], abs=2e-5)


def test_the_demo_explanations_beat_a_random_ranking(demo_client):
    """For the predicted label, deleting the top-ranked words costs the model far more than
    deleting random ones, for input x gradient and integrated gradients alike."""
    notes = assertion_data.load("heldout")[:24]
    for method in ("input_x_gradient", "integrated_gradients"):
        comprehensiveness, floor = [], []
        # One request for the 24 notes (batched by the server; a text's random ranking is the
        # same whatever else its request holds: runtime/explanation/methods.py text_seed).
        response = demo_client.attribute(
            [note.text for note in notes], faithfulness=True, seed=SEED, method=method, steps=16
        )
        for result in response.results:
            column = list(result.labels).index(result.predicted_label)
            comprehensiveness.append(result.faithfulness.comprehensiveness[column])
            floor.append(result.faithfulness.random_comprehensiveness[column])
        assert np.mean(comprehensiveness) > np.mean(floor) + 0.1, (method, comprehensiveness)

"""Texts longer than the model's window read as windows, served over a real gRPC channel and
checked against an independent implementation: the document tokenized by the Hugging Face
tokenizer, cut into windows here, each window run through eager PyTorch autograd, the windows'
logits aggregated and each token's scores taken from the window it is most central in."""

from __future__ import annotations

import functools
import itertools

import grpc
import numpy as np
import pytest
import torch
from eager_reference import input_x_gradient
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving import ServerThread
from test_methods import RELATIVE, reference_ig, relative_difference
from test_serve_scores import _check_span
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from gradlight.runtime.execution.words import words
from gradlight.runtime.explanation.sentences import remove_span, split_sentences
from gradlight.runtime.serving.server import ServerSettings
from gradlight.runtime.settings import DocumentSettings
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1.gradlight_pb2_grpc import AttributorStub

MODELS = ("bert", "roberta", "xlm-roberta")  # WordPiece, byte-level BPE, SentencePiece
MAX_TOKENS = 600
MAX_WINDOWS = 40
TOLERANCE = 1e-4
SENTENCES = (
    "The patient denies chest pain.",
    "Café au lait spots noted on the left arm.",
    "東京 clinic follow-up in two weeks 😀.",
    "No evidence of pneumonia on the x-ray.",
    "She reports worsening cough at night.",
    "Naïve résumé of the prior admission was reviewed.",
    "Aspirin 81 mg daily was continued.",
)
LONG = " ".join(SENTENCES[i % len(SENTENCES)] for i in range(17))


@pytest.fixture(scope="module")
def server(engine_for):
    documents = DocumentSettings(
        max_document_tokens=MAX_TOKENS, max_windows_per_request=MAX_WINDOWS
    )
    engines = {name: engine_for(name) for name in MODELS}
    with ServerThread(engines, ServerSettings(port=0, documents=documents)) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.address)
    yield AttributorStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def eager(tiny_model_dirs):
    @functools.cache
    def get(model_type: str):
        model_dir = tiny_model_dirs[model_type]
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, attn_implementation="eager"
        ).eval()
        return model, AutoTokenizer.from_pretrained(model_dir)

    return get


def attribute(stub, model: str, texts, **fields) -> list[pb.TextResult]:
    fields = {"token_attributions": True, "raw_scores": True, **fields}
    request = pb.AttributeRequest(model=model, texts=list(texts), **fields)
    return list(stub.Attribute(request, timeout=120).results)


# ---- the independent implementation ----


def window_starts(content: int, width: int, stride: int) -> list[int]:
    if content <= width:
        return [0]
    return [*range(0, content - width, stride), content - width]


def owner(position: int, starts: list[int], width: int) -> int:
    """The window position ``position`` (of the content) is most central in; ties: earlier."""
    best, chosen = -1, -1
    for index, start in enumerate(starts):
        if start <= position < start + width:
            centrality = min(position - start, start + width - 1 - position)
            if centrality > best:
                best, chosen = centrality, index
    return chosen


def eager_windows(model, ids: list[int], size: int, stride: int | None):
    """The document's windows (one special token each side), their logits and input x gradient
    scores from eager autograd."""
    content, width = ids[1:-1], size - 2
    stride = stride or width // 2
    starts = window_starts(len(content), width, stride)
    rows = np.asarray([[ids[0], *content[s : s + width], ids[-1]] for s in starts], np.int64)
    feed = {"input_ids": rows, "attention_mask": np.ones_like(rows)}
    if model.config.model_type == "bert":
        feed["token_type_ids"] = np.zeros_like(rows)
    logits, raw = input_x_gradient(model, feed)
    return starts, width, rows, logits, raw


def stitched(raw: np.ndarray, starts: list[int], width: int, length: int) -> np.ndarray:
    """``[L, length]``: the document's scores from the windows' ``[W, L, width + 2]``."""
    out = np.zeros((raw.shape[1], length))
    out[:, 0] = raw[0, :, 0]
    out[:, -1] = raw[-1, :, -1]
    for position in range(length - 2):
        index = owner(position, starts, width)
        out[:, 1 + position] = raw[index, :, 1 + position - starts[index]]
    return out


def document_probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    values = torch.from_numpy(np.asarray(logits, dtype=np.float64))
    if multi_label:
        return torch.sigmoid(values.max(0).values).numpy()
    return torch.softmax(values.mean(0), -1).numpy()


def served_raw(result: pb.TextResult) -> np.ndarray:
    return np.array([list(token.raw_scores) for token in result.tokens], dtype=np.float64).T


# ---- the tests ----


@pytest.mark.parametrize("model_type", MODELS)
def test_a_long_text_equals_its_windows_run_eagerly_and_stitched(stub, eager, model_type):
    model, tokenizer = eager(model_type)
    multi_label = model.config.problem_type == "multi_label_classification"
    ids = tokenizer(LONG)["input_ids"]
    starts, width, _, logits, raw = eager_windows(model, ids, 64, None)
    assert len(starts) >= 4
    [result] = attribute(stub, model_type, [LONG], long_texts="windows")
    assert [token.token_id for token in result.tokens] == ids  # the whole text, no truncation
    assert not result.truncated
    assert result.aggregation == ("max" if multi_label else "mean")
    expected = stitched(raw, starts, width, len(ids))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(served_raw(result), expected, atol=TOLERANCE * scale)
    np.testing.assert_allclose(
        result.probabilities, document_probabilities(logits, multi_label), atol=1e-5
    )
    # each window's own prediction, and its span into the original text
    offsets = tokenizer(LONG, return_offsets_mapping=True)["offset_mapping"]
    assert len(result.windows) == len(starts)
    for window, start, window_logits in zip(result.windows, starts, logits, strict=True):
        own = document_probabilities(window_logits[None], multi_label)
        np.testing.assert_allclose(window.probabilities, own, atol=1e-5)
        first, last = result.tokens[1 + start], result.tokens[start + width]
        assert (window.start, window.end) == (first.start, last.end)
        assert offsets[1 + start][0] <= window.start < window.end <= offsets[start + width][1]
    scored = [(w.scored_start, w.scored_end) for w in result.windows]
    assert scored[0][0] == result.tokens[1].start and scored[-1][1] == result.tokens[-2].end
    # in order; two windows' scored parts share at most the character whose tokens (a
    # character split into several byte-level or SentencePiece pieces) they divide
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(scored))


def test_integrated_gradients_and_a_stride_per_window(stub, eager):
    model, tokenizer = eager("bert")
    ids = tokenizer(LONG)["input_ids"]
    stride = 40
    starts, width, rows, _, _ = eager_windows(model, ids, 64, stride)
    [result] = attribute(
        stub,
        "bert",
        [LONG],
        long_texts="windows",
        window_stride=stride,
        method="integrated_gradients",
        steps=8,
        labels=["label_2", "label_0"],
    )
    assert len(result.windows) == len(starts) and result.steps == 8
    layer = model.get_input_embeddings()
    pad_id = tokenizer.pad_token_id
    per_window = []
    for row in rows:
        window_ids = torch.from_numpy(row)[None]
        special = torch.zeros(len(row), dtype=torch.bool)
        special[0] = special[-1] = True
        per_window.append(
            [
                reference_ig(model, layer, window_ids, special, pad_id, baseline="pad",
                             label=label, steps=8, rule="gausslegendre", lig=True)
                for label in (2, 0)
            ]
        )  # fmt: skip
    expected = stitched(np.asarray(per_window), starts, width, len(ids))
    raw = served_raw(result)
    for k in range(2):
        assert relative_difference(raw[k], expected[k]) < RELATIVE
    gaps = np.array([list(window.completeness_gaps) for window in result.windows])
    worst = gaps[np.abs(gaps).argmax(0), [0, 1]]
    np.testing.assert_allclose(result.completeness_gaps, worst)


def _windows_counted(server) -> dict[str, float]:
    metric = server.running.registry.metrics.windows
    return {
        sample.labels["kind"]: sample.value
        for family in metric.collect()
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["model"] == "bert"
    }


def test_faithfulness_is_of_the_whole_text_and_windows_are_counted(stub, server):
    before = _windows_counted(server)
    [result, short] = attribute(
        stub, "bert", [LONG, "Short."], long_texts="windows", faithfulness=True, seed=5
    )  # the short text is not counted: it is read in one window, as truncated
    assert not short.windows
    [cut] = attribute(stub, "bert", [LONG], long_texts="truncate", faithfulness=True, seed=5)
    # every word of the text ranked (the truncated text: those of its first window)
    assert result.faithfulness.words == len(words(LONG)) > cut.faithfulness.words
    assert len(result.faithfulness.comprehensiveness) == len(result.labels)
    after = _windows_counted(server)
    assert after["document"] - before.get("document", 0) == 1
    assert after["window"] - before.get("window", 0) == len(result.windows)


def test_sentences_are_left_out_of_the_whole_text_and_windowed_again(stub, eager):
    model, tokenizer = eager("bert")
    spans = split_sentences(LONG)
    [result] = attribute(
        stub, "bert", [LONG], long_texts="windows", sentence_attributions=True,
        token_attributions=False,
    )  # fmt: skip
    assert len(result.sentences) == len(spans) and not result.tokens
    _, _, _, logits, _ = eager_windows(model, tokenizer(LONG)["input_ids"], 64, None)
    p_full = document_probabilities(logits, False)
    np.testing.assert_allclose(result.probabilities, p_full, atol=1e-5)
    for index in (0, len(spans) // 2, len(spans) - 1):
        variant = remove_span(LONG, spans, index)
        _, _, _, variant_logits, _ = eager_windows(model, tokenizer(variant)["input_ids"], 64, None)
        expected = p_full - document_probabilities(variant_logits, False)
        np.testing.assert_allclose(result.sentences[index].scores, expected, atol=1e-5)


SHORT = ["The patient denies chest pain.", "東京 clinic 😀 follow-up. Café closed."]
MODES = [
    {},
    {"sentence_attributions": True, "faithfulness": True, "seed": 7},
    {"method": "integrated_gradients", "steps": 8, "labels": ["label_1"]},
    {"method": "gradient_shap", "samples": 4, "seed": 3},
    {"method": "integrated_gradients", "completeness_tolerance": 0.05, "steps": 32},
]


def _numbers(result: pb.TextResult) -> list[float]:
    """Every number of a result computed from logits or scores."""
    faithfulness = result.faithfulness
    return [
        *result.probabilities,
        *result.completeness_gaps,
        *(value for token in result.tokens for value in (*token.scores, *token.raw_scores)),
        *(value for sentence in result.sentences for value in sentence.scores),
        *faithfulness.comprehensiveness,
        *faithfulness.sufficiency,
        *faithfulness.random_comprehensiveness,
        *faithfulness.random_sufficiency,
    ]


def _structure(result: pb.TextResult) -> pb.TextResult:
    """``result`` without the numbers ``_numbers`` lists."""
    copy = pb.TextResult()
    copy.CopyFrom(result)
    del copy.probabilities[:], copy.completeness_gaps[:]
    for token in copy.tokens:
        del token.scores[:], token.raw_scores[:]
    for sentence in copy.sentences:
        del sentence.scores[:]
    if copy.HasField("faithfulness"):
        for name in ("comprehensiveness", "sufficiency", "random_comprehensiveness",
                     "random_sufficiency"):  # fmt: skip
            del getattr(copy.faithfulness, name)[:]
    return copy


@pytest.mark.parametrize("fields", MODES)
def test_a_text_that_fits_gets_exactly_the_truncating_answer(stub, fields):
    """Alone: the same answer, bit for bit. Next to a long text (padded with its windows in
    the same calls): the same answer but for float rounding."""
    truncated = attribute(stub, "bert", SHORT, long_texts="truncate", **fields)
    alone = attribute(stub, "bert", SHORT, long_texts="windows", **fields)
    assert alone == truncated
    mixed = attribute(stub, "bert", [SHORT[0], LONG, SHORT[1]], long_texts="windows", **fields)
    assert len(mixed[1].windows) > 1
    for expected, other in zip(truncated, [mixed[0], mixed[2]], strict=True):
        assert _structure(other) == _structure(expected)
        np.testing.assert_allclose(_numbers(other), _numbers(expected), atol=1e-5)


def test_an_entity_far_into_a_long_text_is_read_in_a_window_centred_on_it(stub):
    start = LONG.index("Aspirin", len(LONG) // 2)
    span = pb.EntitySpan(start=start, end=start + len("Aspirin"))
    request = pb.AttributeRequest(
        model="bert",
        texts=[LONG],
        long_texts="windows",
        entities=[pb.TextEntities(spans=[span])],
        entity_marking=pb.EntityMarking(context_chars=100_000),
        sentence_attributions=True,
        token_attributions=True,
    )
    [entity] = stub.Attribute(request, timeout=60).results[0].entities
    result = entity.result
    assert result.truncated and len(result.tokens) == 64 and len(result.windows) == 1
    markers = [i for i, token in enumerate(result.tokens) if token.marker]
    assert len(markers) >= 2
    before, after = markers[0] - 1, len(result.tokens) - 2 - markers[-1]
    assert abs(before - after) <= 1  # centred
    window = result.windows[0]
    assert window.start < span.start < span.end < window.end
    assert result.sentences  # only those the window reads a part of
    assert all(s.end > window.start and s.start < window.end for s in result.sentences)


def _violation(error: grpc.RpcError) -> str:
    status = status_pb2.Status.FromString(
        dict(error.trailing_metadata())["grpc-status-details-bin"]
    )
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            found = error_details_pb2.BadRequest()
            detail.Unpack(found)
            return found.field_violations[0].field
    raise AssertionError("no field violation")


@pytest.mark.parametrize(
    ("texts", "fields", "field"),
    [
        (["x " * (MAX_TOKENS + 10)], {"long_texts": "windows"}, "texts[0]"),
        (["ok.", LONG * 2], {"long_texts": "windows"}, "texts[1]"),
        ([LONG] * 5, {"long_texts": "windows", "window_stride": 4}, "texts"),
        ([LONG], {"long_texts": "windows", "window_stride": 63}, "window_stride"),
        ([LONG], {"long_texts": "sliding"}, "long_texts"),
        ([LONG], {"window_stride": 8}, "window_stride"),
        ([LONG], {"long_texts": "windows", "aggregation": "median"}, "aggregation"),
    ],
)
def test_limits_and_bad_fields_are_refused_naming_the_field(stub, server, texts, fields, field):
    before = server.running.registry.models["bert"].batcher.waiting_rows
    with pytest.raises(grpc.RpcError) as info:
        attribute(stub, "bert", texts, **fields)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violation(info.value) == field
    assert server.running.registry.models["bert"].batcher.waiting_rows == before == 0
    assert len(attribute(stub, "bert", ["Still serving."])) == 1


ALPHABET = st.sampled_from([*"abcdefghij ABC  .,;-'\n\té è ü ñ ç 東 京 病 院 😀 🤒 ß Ω", "  "])


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(ALPHABET, min_size=150, max_size=400).map("".join))
@pytest.mark.parametrize("model_type", MODELS)
def test_offsets_are_exact_into_long_texts(stub, eager, model_type, text):
    if not text.strip():
        text = "x" + text
    _, tokenizer = eager(model_type)
    encoded = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    [result] = attribute(stub, model_type, [text], long_texts="windows", token_attributions=False,
                         sentence_attributions=False)  # fmt: skip
    [scored] = attribute(stub, model_type, [text], long_texts="windows")
    assert [token.token_id for token in scored.tokens] == encoded["input_ids"]
    for token, (start, end), special in zip(
        scored.tokens, encoded["offset_mapping"], encoded["special_tokens_mask"], strict=True
    ):
        assert token.special == bool(special)
        if not special:
            _check_span((token.start, token.end), text, start, end)
    windows = scored.windows or []
    assert len(windows) == len(result.windows)
    for window in windows:
        assert 0 <= window.start < window.end <= len(text)
        assert window.scored_start <= window.scored_end

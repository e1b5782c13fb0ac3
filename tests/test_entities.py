"""Entity-focused classification: each span is read with markers in a window of context, its
answer equals attributing that marked text plainly, and every offset maps back to the
original text; over gRPC and HTTP."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from conftest import ARCHITECTURE_CASES
from http_json import grpc_json, request_json
from hypothesis import given, settings
from hypothesis import strategies as st

from gradlight.runtime.explanation.entities import EntityMarking, mark
from gradlight.runtime.explanation.sentences import remove_span
from gradlight.v1 import gradlight_pb2 as pb

TEXT = (
    "History: hypertension and type 2 diabetes. The patient denied any chest pain today. "
    "She reported no shortness of breath. Aspirin was stopped by Dr. Smith."
)
ENTITIES = ("chest pain", "shortness of breath", "Aspirin")


def _spans(text=TEXT, entities=ENTITIES):
    return [(text.index(entity), text.index(entity) + len(entity)) for entity in entities]


@given(
    st.text(alphabet=st.sampled_from("ab <>.\n😀é"), min_size=1, max_size=60),
    st.data(),
    st.sampled_from([("<e>", "</e>"), ("", ""), ("[E]", ""), ("@", "$$")]),
    st.integers(0, 30),
)
@settings(max_examples=300, deadline=None)
def test_marked_positions_map_back_to_the_original_text(text, data, markers, context):
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    marked = mark(text, start, end, EntityMarking(*markers, context))
    assert marked.context_start <= start < end <= marked.context_end
    assert start - marked.context_start <= context and marked.context_end - end <= context
    assert marked.marked_text == (
        text[marked.context_start : start]
        + markers[0]
        + text[start:end]
        + markers[1]
        + text[end : marked.context_end]
    )
    for position, character in enumerate(marked.marked_text):
        low, high, is_marker = marked.token_span(position, position + 1)
        if is_marker:
            assert low == high and low in (start, end)
        else:
            assert text[low:high] == character
    # Sentences of the window, in both texts: the same words, the marked ones with markers.
    original, in_marked = marked.sentences()
    for a, b in zip(original, in_marked, strict=True):
        assert marked.context_start <= a.start < a.end <= marked.context_end
        # The marked sentence is the original one, with each marker inside it at its place.
        opens, closes = a.start <= start < a.end, a.start < end <= a.end
        expected = (
            text[a.start : start] + markers[0] if opens else text[a.start : max(a.start, start)]
        )
        expected += text[max(a.start, start) : min(a.end, end)] if start < a.end else ""
        expected += markers[1] + text[end : a.end] if closes else ""
        if not (start < a.end and a.start < end):  # a sentence away from the span
            expected = text[a.start : a.end]
        assert marked.marked_text[b.start : b.end] == expected, (a, b)


def test_window_never_cuts_a_word():
    text = "alpha beta gamma delta epsilon zeta"
    marked = mark(text, text.index("delta"), text.index("delta") + 5, EntityMarking("<", ">", 7))
    assert marked.marked_text == "gamma <delta>"  # "a gamma " and " epsilo" would cut words


def _original_positions(entity, start, end, opening="<e>", closing="</e>"):
    """The original text's positions of marked-text positions [start, end), markers left out."""
    before = entity.start - entity.context_start  # marked text: context, <e>, span, </e>, rest
    inside = before + len(opening)
    after = inside + (entity.end - entity.start) + len(closing)
    positions = []
    for i in range(start, end):
        if i < before:
            positions.append(entity.context_start + i)
        elif inside <= i < inside + entity.end - entity.start:
            positions.append(entity.start + i - inside)
        elif i >= after:
            positions.append(entity.end + i - after)
    return positions


def _request_entities(spans_per_text):
    return [
        pb.TextEntities(spans=[pb.EntitySpan(start=a, end=b) for a, b in spans])
        for spans in spans_per_text
    ]


@pytest.mark.parametrize("model_type", list(ARCHITECTURE_CASES))
def test_each_span_answers_as_its_marked_text_with_offsets_mapped_back(model_type, tiny_client):
    spans = _spans()
    response = tiny_client.attribute(
        [TEXT, "Fever present."],
        model=model_type,
        entities=[spans, []],
        sentence_attributions=True,
        raw_scores=True,
        context_chars=60,
    )
    result, whole = response.results
    assert result.text == TEXT and not result.labels and not result.tokens
    assert whole.labels and whole.tokens and not whole.entities  # no spans: classified whole
    assert [(entity.start, entity.end) for entity in result.entities] == spans
    marked_texts = [entity.marked_text for entity in result.entities]
    plain = tiny_client.attribute(
        marked_texts, model=model_type, sentence_attributions=True, raw_scores=True
    )
    for entity, reference in zip(result.entities, plain.results, strict=True):
        marked = entity.marked_text
        assert marked == (
            TEXT[entity.context_start : entity.start]
            + "<e>"
            + TEXT[entity.start : entity.end]
            + "</e>"
            + TEXT[entity.end : entity.context_end]
        )
        answer = entity.result
        assert answer.text == ""
        assert answer.predicted_label == reference.predicted_label
        np.testing.assert_allclose(answer.probabilities, reference.probabilities, atol=1e-6)
        assert [t.token_id for t in answer.tokens] == [t.token_id for t in reference.tokens]
        for token, plain_token in zip(answer.tokens, reference.tokens, strict=True):
            np.testing.assert_allclose(token.raw_scores, plain_token.raw_scores, atol=1e-6)
            surface = marked[plain_token.start : plain_token.end]
            if plain_token.special:
                assert token.special and not token.marker and (token.start, token.end) == (0, 0)
            elif token.marker:
                assert token.special and token.start == token.end
                assert token.start in (entity.start, entity.end)
                assert surface and set(surface) <= set("<e>/")
            else:
                assert not token.special
                # A piece may reach into a marker ("▁<", "e", ">A" where "<e>" is not one
                # token): its span in the original text is what it covers outside the markers.
                covered = _original_positions(entity, plain_token.start, plain_token.end)
                assert (token.start, token.end) == (min(covered), max(covered) + 1)
        markers = [token for token in answer.tokens if token.marker]
        assert markers and {token.start for token in markers} == {entity.start, entity.end}
        # Sentences: of the window, in original offsets.
        for sentence in answer.sentences:
            assert entity.context_start <= sentence.start < sentence.end <= entity.context_end
            assert sentence.sentence == TEXT[sentence.start : sentence.end]


def test_a_sentence_removed_leaves_the_marked_span(tiny_client):
    """Removing the entity's own sentence keeps the marked entity, with the whitespace around
    the sentence (the score says what the rest of that sentence did); the scores equal
    predicting the variants plainly."""
    (start, end) = _spans(entities=("shortness of breath",))[0]
    response = tiny_client.attribute(
        [TEXT], model="bert", entities=[[(start, end)]], sentence_attributions=True
    )
    entity = response.results[0].entities[0]
    marked = mark(TEXT, start, end, EntityMarking())
    original, in_marked = marked.sentences()
    assert len(original) == 4
    # the tiny model reads 64 tokens of the marked text: a part of its first three sentences;
    # the fourth is not listed
    assert entity.result.truncated
    assert [(s.start, s.end) for s in entity.result.sentences] == [
        (s.start, s.end) for s in original[:3]
    ]
    own = "She reported no <e>shortness of breath</e>. "
    assert own in marked.marked_text
    variants = [remove_span(marked.marked_text, in_marked, i) for i in range(len(in_marked))]
    variants[2] = marked.marked_text.replace(own, "<e>shortness of breath</e> ", 1)
    p_full = np.asarray(
        tiny_client.predict([marked.marked_text], model="bert").results[0].probabilities
    )
    predicted = tiny_client.predict(variants, model="bert").results
    for sentence, variant in zip(entity.result.sentences, predicted[:3], strict=True):
        np.testing.assert_allclose(
            sentence.scores, p_full - np.asarray(variant.probabilities), atol=1e-5
        )


def test_predict_markers_and_context_are_configurable(tiny_client):
    spans = _spans(entities=("Aspirin",))
    response = tiny_client.predict(
        [TEXT], model="roberta", entities=[spans], markers=("[E]", "[/E]"), context_chars=0
    )
    entity = response.results[0].entities[0]
    assert entity.marked_text == "[E]Aspirin[/E]"
    assert (entity.context_start, entity.context_end) == spans[0]
    assert entity.result.predicted_label in entity.result.labels
    assert not entity.result.tokens  # Predict: no attributions


@pytest.mark.parametrize(
    ("entities", "marking", "field"),
    [
        ([[(0, 5)], [(0, 1)]], None, "entities"),  # two entries, one text
        ([[(5, 5)]], None, "entities[0].spans[0]"),
        ([[(-1, 3)]], None, "entities[0].spans[0]"),
        ([[(0, 3), (3, 10_000)]], None, "entities[0].spans[1]"),
        ([[(0, 3)]], {"context_chars": -1}, "entity_marking.context_chars"),
        ([[(0, 3)]], {"open": "<" * 101}, "entity_marking.open"),
    ],
)
def test_bad_entity_fields_are_refused_naming_the_field(tiny_client, entities, marking, field):
    request = pb.AttributeRequest(
        model="bert",
        texts=[TEXT],
        token_attributions=True,
        entities=_request_entities(entities),
        entity_marking=pb.EntityMarking(**(marking or {})),
    )
    with pytest.raises(grpc.RpcError) as caught:
        tiny_client._stub.Attribute(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}: ")


def test_too_many_spans_are_refused(tiny_server):
    from gradlight.client import Client

    limit = tiny_server.settings.limits.max_texts_per_request
    with Client(tiny_server.address) as client, pytest.raises(grpc.RpcError) as caught:
        client.predict(["x y"], model="bert", entities=[[(0, 1)] * (limit + 1)])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("entities: ")


def test_http_takes_the_same_fields(tiny_server, tiny_client):
    spans = _spans(entities=("chest pain",))
    body = {
        "model": "electra",
        "texts": [TEXT],
        "token_attributions": True,
        "entities": [{"spans": [{"start": a, "end": b} for a, b in spans]}],
        "entity_marking": {"open": "<e>", "context_chars": 40},
    }
    status, answer = request_json(tiny_server.http_url + "v1/attribute", body)
    assert status == 200
    expected = tiny_client.attribute([TEXT], model="electra", entities=[spans], context_chars=40)
    assert answer["results"][0]["entities"][0]["marked_text"] == (
        expected.results[0].entities[0].marked_text
    )
    assert answer == grpc_json(expected)
    status, error = request_json(
        tiny_server.http_url + "v1/attribute",
        {**body, "entities": [{"spans": [{"start": 3, "end": 2}]}]},
    )
    assert status == 400 and error["error"]["code"] == "INVALID_ARGUMENT"
    assert error["error"]["message"].startswith("entities[0].spans[0]: ")

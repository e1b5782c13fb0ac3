"""Scores served over gRPC equal eager PyTorch autograd on the same model and the same tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ARCHITECTURE_CASES
from eager_reference import input_x_gradient
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from gradlight.artifact.manifest import load_manifest
from gradlight.runtime.execution.scores import normalize_scores
from gradlight.runtime.explanation.sentences import split_sentences

TEXTS = [
    "The patient denies chest pain. No evidence of pneumonia on the chest x-ray.",
    "Dr. Smith started amoxicillin 500 mg b.i.d. for ten days. She reports worsening cough.",
    "Café résumé naïve — 東京 病院 😀 emoji test.",
    "Follow up with cardiology in two weeks.",
    "Fièvre 🤒 à 39°C, 肺 nodule.",  # unseen characters: [UNK], or byte pieces (camembert)
]
TOLERANCE = 1e-4


def _eager(model_dir, texts):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, attn_implementation="eager"
    ).eval()
    batch = tokenizer(texts, padding=True, return_tensors="np")
    feed = {name: batch[name].astype(np.int64) for name in tokenizer.model_input_names}
    logits, raw = input_x_gradient(model, feed)
    return model, tokenizer, batch, logits, raw


def _probabilities(logits, multi_label):
    logits = torch.from_numpy(np.asarray(logits, dtype=np.float64))
    return (torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1)).numpy()


def _check_span(served, text, start, end):
    """The served span is the tokenizer's span without surrounding whitespace (a SentencePiece
    "▁" piece, or byte-level "Ġ" without trimming, carries its space); a token the tokenizer
    left an empty span (RoBERTa's trimmed "Ġ") has the whitespace before it."""
    surface = text[start:end]
    if start == end:
        assert served[1] == end and text[served[0] : served[1]].isspace()
    elif not surface.strip():
        assert served == (start, end)
    else:
        stripped = len(surface) - len(surface.lstrip()), len(surface) - len(surface.rstrip())
        assert served == (start + stripped[0], end - stripped[1])


@pytest.mark.parametrize("model_type", list(ARCHITECTURE_CASES))
def test_token_scores_match_eager_autograd(model_type, tiny_model_dirs, tiny_client, exported):
    multi_label = ARCHITECTURE_CASES[model_type][1]
    _, tokenizer, batch, logits, raw = _eager(tiny_model_dirs[model_type], TEXTS)
    normalized = normalize_scores(raw, batch["attention_mask"])
    validation = load_manifest(exported(model_type)).validation
    score_tolerance = max(TOLERANCE, validation["score_tolerance"])
    offsets = tokenizer(TEXTS, return_offsets_mapping=True, return_special_tokens_mask=True)
    response = tiny_client.attribute(TEXTS, model=model_type, raw_scores=True)
    assert [result.text for result in response.results] == TEXTS
    for row, result in enumerate(response.results):
        length = int(batch["attention_mask"][row].sum())
        assert [token.token_id for token in result.tokens] == batch["input_ids"][row][
            :length
        ].tolist()
        served_raw = np.array([list(token.raw_scores) for token in result.tokens]).T
        served = np.array([list(token.scores) for token in result.tokens]).T
        scale = np.abs(raw[row, :, :length]).max()
        np.testing.assert_allclose(served_raw, raw[row, :, :length], atol=TOLERANCE * scale)
        np.testing.assert_allclose(served, normalized[row, :, :length], atol=score_tolerance)
        expected = _probabilities(logits[row], multi_label)
        np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
        # Offsets: the tokenizer's own, into the original text (accents, CJK, emoji).
        special = offsets["special_tokens_mask"][row]
        for token, (start, end), is_special in zip(
            result.tokens, offsets["offset_mapping"][row], special, strict=True
        ):
            assert token.special == bool(is_special)
            if not is_special:
                _check_span((token.start, token.end), TEXTS[row], start, end)
        labels = list(result.labels)
        assert result.predicted_label == labels[int(np.argmax(expected))]
        if multi_label:
            assert list(result.predicted_labels) == [
                label for label, p in zip(labels, expected, strict=True) if p >= 0.5
            ]


def test_label_subset_is_computed_alone_and_in_request_order(tiny_model_dirs, tiny_client):
    """ELECTRA has 4 labels; ask for labels 3 and 1 only (the cotangent graph's path)."""
    _, _, batch, logits, raw = _eager(tiny_model_dirs["electra"], TEXTS)
    normalized = normalize_scores(raw, batch["attention_mask"])
    models = {model.name: model for model in tiny_client.list_models().models}
    all_labels = list(models["electra"].labels)
    wanted = [all_labels[3], all_labels[1]]
    response = tiny_client.attribute(TEXTS, model="electra", labels=wanted)
    for row, result in enumerate(response.results):
        length = int(batch["attention_mask"][row].sum())
        assert list(result.labels) == wanted
        served = np.array([list(token.scores) for token in result.tokens]).T
        np.testing.assert_allclose(served, normalized[row, [3, 1], :length], atol=TOLERANCE)
        expected = _probabilities(logits[row], False)
        np.testing.assert_allclose(result.probabilities, expected[[3, 1]], atol=1e-5)
        assert result.predicted_label == all_labels[int(np.argmax(expected))]


def _without(text, spans, index):
    """The documented ablation: drop the sentence and the whitespace up to the next one (the
    last sentence: the whitespace before it)."""
    start, end = spans[index]
    if index + 1 < len(spans):
        return text[:start] + text[spans[index + 1][0] :]
    previous_end = spans[index - 1][1]
    return text[:previous_end] + text[end:]


@pytest.mark.parametrize("model_type", list(ARCHITECTURE_CASES))
def test_sentence_scores_match_eager_leave_one_out(model_type, tiny_model_dirs, tiny_client):
    multi_label = ARCHITECTURE_CASES[model_type][1]
    # Short enough for every tiny model's positions (at most 51 tokens), so nothing is cut.
    text = "Dr. Smith started amoxicillin. She reports worsening cough. He was discharged home."
    response = tiny_client.attribute(
        [text, TEXTS[3]], model=model_type, token_attributions=False, sentence_attributions=True
    )
    result, single = response.results
    assert not result.truncated
    spans = [(sentence.start, sentence.end) for sentence in result.sentences]
    assert [text[a:b] for a, b in spans] == [
        "Dr. Smith started amoxicillin.",
        "She reports worsening cough.",
        "He was discharged home.",
    ]
    assert [sentence.sentence for sentence in result.sentences] == [text[a:b] for a, b in spans]
    variants = [text] + [_without(text, spans, i) for i in range(len(spans))]
    _, _, _, logits, _ = _eager(tiny_model_dirs[model_type], variants)
    p = _probabilities(logits, multi_label)
    expected = p[0][None, :] - p[1:]
    served = np.array([list(sentence.scores) for sentence in result.sentences])
    np.testing.assert_allclose(served, expected[:3], atol=1e-5)
    np.testing.assert_allclose(result.probabilities, p[0], atol=1e-5)
    # One sentence: 0.0 for every label.
    assert len(single.sentences) == 1
    assert list(single.sentences[0].scores) == [0.0] * len(single.labels)


def test_sentences_cut_off_by_truncation_are_not_listed_nor_run(
    tiny_model_dirs, tiny_server, tiny_client
):
    sentences = [
        "Dr. Smith started amoxicillin 500 mg b.i.d. for ten days.",
        "She reports worsening cough.",
        "He was discharged home in stable condition.",
        "Follow up with cardiology in two weeks.",
        "No evidence of pneumonia on the chest x-ray.",
    ]
    text = " ".join(sentences)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["bert"])
    # Keep the first two sentences and part of the third.
    kept = len(tokenizer(" ".join(sentences[:2]))["input_ids"]) + 2
    batcher = tiny_server.running.registry.models["bert"].batcher
    before = batcher.calls
    result = tiny_client.attribute(
        [text], model="bert", max_length=kept, token_attributions=False, sentence_attributions=True
    ).results[0]
    # the three sentences the model reads a part of are listed; the two after are not
    assert result.truncated and len(result.sentences) == 3
    assert batcher.history[-1].rows == 1 + 3  # the text and the three sentences it reaches
    assert batcher.calls == before + 1
    spans = [(sentence.start, sentence.end) for sentence in result.sentences]
    spans += [(s.start, s.end) for s in split_sentences(text)[3:]]
    variants = [text] + [_without(text, spans, i) for i in range(5)]
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dirs["bert"]).eval()
    batch = tokenizer(variants, truncation=True, max_length=kept, padding=True, return_tensors="pt")
    with torch.no_grad():
        p = torch.softmax(model(**batch).logits.double(), -1).numpy()
    expected = p[0][None, :] - p[1:]
    np.testing.assert_allclose(expected[3:], 0.0, atol=1e-7)  # eager agrees: unseen, no effect
    served = np.array([list(sentence.scores) for sentence in result.sentences])
    np.testing.assert_allclose(served, expected[:3], atol=1e-5)
    assert np.abs(served[:3]).max() > 0


def test_predict_matches_eager_forward(tiny_model_dirs, tiny_client):
    _, _, _, logits, _ = _eager(tiny_model_dirs["roberta"], TEXTS)
    response = tiny_client.predict(TEXTS, model="roberta")
    assert response.model == "roberta"
    for row, result in enumerate(response.results):
        np.testing.assert_allclose(
            result.probabilities, _probabilities(logits[row], False), atol=1e-5
        )
        assert not result.tokens and not result.sentences


def test_truncation_to_max_length_is_flagged_and_matches_eager(tiny_model_dirs, tiny_client):
    text = " ".join(TEXTS * 3)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["bert"])
    # A text of exactly max_length tokens is not truncated; one token fewer is.
    exact = len(tokenizer(TEXTS[3])["input_ids"])
    response = tiny_client.attribute([text, TEXTS[3]], model="bert", max_length=exact)
    long, short = response.results
    assert long.truncated and len(long.tokens) == exact and long.num_tokens == exact
    assert not short.truncated and short.num_tokens == exact
    shorter = tiny_client.attribute([TEXTS[3]], model="bert", max_length=exact - 1).results[0]
    assert shorter.truncated and shorter.num_tokens == exact - 1

    response = tiny_client.attribute([text], model="bert", max_length=20)
    (long,) = response.results
    assert long.truncated and len(long.tokens) == 20 and long.num_tokens == 20
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dirs["bert"]).eval()
    batch = tokenizer([text], truncation=True, max_length=20, return_tensors="np")
    assert [token.token_id for token in long.tokens] == batch["input_ids"][0].tolist()
    feed = {name: batch[name].astype(np.int64) for name in tokenizer.model_input_names}
    _, raw = input_x_gradient(model, feed)
    served = np.array([list(token.scores) for token in long.tokens]).T
    np.testing.assert_allclose(
        served, normalize_scores(raw, feed["attention_mask"])[0], atol=TOLERANCE
    )

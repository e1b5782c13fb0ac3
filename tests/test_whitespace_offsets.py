"""A token that stands for whitespace alone gets the span of that whitespace (RoBERTa-style
byte-level BPE trims it to an empty span); every other offset is the tokenizer's own without
the whitespace around it (a Metaspace "▁r" that spans its space spans "r"). With real
tokenizers trained here (byte-level BPE as the tiny RoBERTa's, WordPiece as the tiny BERT's, and
a SentencePiece-like Unigram with Metaspace), on texts with CJK, emoji, accents, runs of spaces
and newlines; and what reads those spans (entity markers, the sentence variants' read limit, the
evidence items) still does what it did."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import CORPUS, _bpe_tokenizer, _wordpiece_tokenizer
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import UnigramTrainer

from gradlight.bulk.evidence import TOKEN, WORD, Selection, evidence
from gradlight.runtime.execution.tokenization import TextEncoder
from gradlight.runtime.execution.words import WHITE_SPACE, is_blank, words
from gradlight.runtime.explanation.ablation import read_until
from gradlight.runtime.explanation.entities import DEFAULT_MARKING, in_original, mark
from gradlight.v1 import gradlight_pb2 as pb

PIECES = [
    "The patient",
    " denies",
    " chest pain",
    ".",
    ",",
    " ",
    "  ",
    "   ",
    "\n",
    "\n\n",
    " \n",
    "\t",
    "\u3000",
    "\u00a0",
    "東京",
    "病院",
    "に行きます。",
    "\U0001f600",
    "\U0001f469\U0001f3fd\u200d\u2695\ufe0f",
    "Café",
    "résumé",
    "e\u0301",
    "naïve",
    "don't",
    "x" * 12,
]
TEXTS = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), max_size=30).map("".join)


def _metaspace_tokenizer() -> Tokenizer:
    """SentencePiece-like: Unigram pieces over Metaspace ("▁" for a space), with the collapsing
    of space runs XLM-R's normalizer does."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tokenizer.train_from_iterator(
        CORPUS * 4, UnigramTrainer(vocab_size=200, special_tokens=specials, unk_token="<unk>")
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        special_tokens=[
            ("<s>", tokenizer.token_to_id("<s>")),
            ("</s>", tokenizer.token_to_id("</s>")),
        ],
    )
    return tokenizer


BUILDERS = {
    "byte-level": lambda: _bpe_tokenizer(400),
    "wordpiece": lambda: _wordpiece_tokenizer(200),
    "metaspace": _metaspace_tokenizer,
}


@pytest.fixture(scope="module", params=list(BUILDERS))
def tokenizers(request, tmp_path_factory):
    """(name, the tokenizer as trained, the serving TextEncoder on its saved tokenizer.json)."""
    path = tmp_path_factory.mktemp(request.param) / "tokenizer.json"
    BUILDERS[request.param]().save(str(path))
    return request.param, Tokenizer.from_file(str(path)), TextEncoder(path)


@pytest.fixture(scope="module")
def byte_level(tmp_path_factory):
    path = tmp_path_factory.mktemp("byte-level") / "tokenizer.json"
    _bpe_tokenizer(400).save(str(path))
    return Tokenizer.from_file(str(path)), TextEncoder(path)


def _check(name, tokenizer, encoder, text):
    raw = tokenizer.encode(text)
    served = encoder.encode([text], 100_000)[0]
    assert served.tokens == tuple(raw.tokens)
    covered = 0
    for token, before, after, special in zip(
        raw.tokens, raw.offsets, served.offsets, served.special, strict=True
    ):
        if special or (before[0] < before[1] and is_blank(text[before[0] : before[1]])):
            assert after == before  # the tokenizer's own span
        elif before[0] < before[1]:  # the tokenizer's span, without whitespace around it
            surface = text[before[0] : before[1]]
            blanks = "".join(WHITE_SPACE)
            leading = len(surface) - len(surface.lstrip(blanks))
            trailing = len(surface) - len(surface.rstrip(blanks))
            assert after == (before[0] + leading, before[1] - trailing)
        else:  # an empty span: the whitespace the token stands for, ending where it ended
            start, end = after
            assert end == before[1] and start < end, (token, after)
            assert is_blank(text[start:end]) and covered <= start
            if name == "byte-level":
                assert text[start:end] == tokenizer.decoder.decode([token])  # exactly it
        if not special:
            covered = max(covered, after[1])
    if name == "byte-level":  # every text token has a span now
        assert all(a < b for (a, b), s in zip(served.offsets, served.special, strict=True) if not s)
    return raw, served


@pytest.mark.parametrize(
    ("text", "spaces"),
    [
        ("Hello 病院 visit", [(5, 6), (8, 9)]),
        ("a  b   c", [(1, 2), (4, 5), (5, 6)]),  # the space before "b" is in "Ġb", trimmed
        (" lead", [(0, 1)]),
        ("trail ", [(5, 6)]),
        ("病 院", [(1, 2)]),
        ("pain   \t 東京", [(4, 5), (5, 6), (6, 7), (8, 9)]),
        ("a \n b", [(1, 2)]),
        ("Café 😀 here", [(4, 5), (6, 7)]),
    ],
)
def test_byte_level_space_tokens_get_their_spaces(byte_level, text, spaces):
    tokenizer, encoder = byte_level
    raw, served = _check("byte-level", tokenizer, encoder, text)
    trimmed = [i for i, (a, b) in enumerate(raw.offsets) if a == b and not served.special[i]]
    assert [served.offsets[i] for i in trimmed] == spaces
    assert all(served.tokens[i] == "Ġ" for i in trimmed)


@settings(max_examples=200, deadline=None)
@given(text=TEXTS)
def test_spans_lose_surrounding_whitespace_and_empty_ones_become_whitespace(tokenizers, text):
    _check(*tokenizers, text)


@settings(max_examples=100, deadline=None)
@given(text=TEXTS, max_length=st.sampled_from([4, 8, 16]))
def test_the_read_limit_of_a_truncated_text_does_not_move(byte_level, text, max_length):
    """ablation.py's read_until looks at where the read tokens end, which the widened spans
    keep."""
    tokenizer, encoder = byte_level
    served = encoder.encode([text], max_length)[0]
    tokenizer.enable_truncation(max_length)
    trimmed = replace(served, offsets=tuple(tokenizer.encode(text).offsets))
    tokenizer.no_truncation()
    assert read_until(text, served) == read_until(text, trimmed)


def test_entity_markers_keep_their_empty_spans(byte_level):
    """A marker's tokens stay empty where the marker was inserted; the space token before a
    marker now covers its space."""
    _, encoder = byte_level
    text = "Patient denies 病院 chest pain, fever 😀 now."
    for start, end in [(15, 17), (8, 14), (38, 39)]:
        marked = mark(text, start, end, DEFAULT_MARKING)
        encoded = in_original(encoder.encode([marked.marked_text], 512)[0], marked)
        for (a, b), special, marker, token in zip(
            encoded.offsets, encoded.special, encoded.markers, encoded.tokens, strict=True
        ):
            if marker:
                assert special and a == b and a in (start, end)
            elif not special:
                assert a < b
                if token == "Ġ":
                    assert text[a:b] == " "
        assert any(m for m in encoded.markers)


def _result(encoded, text):
    """A served result of ``encoded`` (real token strings and offsets; scores made up: 1 per
    token, so an item's raw sum counts its tokens)."""
    result = pb.TextResult(text=text, labels=["x"], predicted_label="x", probabilities=[1.0])
    for token, (start, end), special in zip(
        encoded.tokens, encoded.offsets, encoded.special, strict=True
    ):
        result.tokens.add(
            token=token, start=start, end=end, special=special, scores=[1.0], raw_scores=[1.0]
        )
    return result


def test_evidence_items_merge_a_space_token_into_the_item_after_it(byte_level):
    """As before, a space token's score goes to the item after it (token evidence) and to the
    word after it (word evidence); whitespace alone is never evidence."""
    _, encoder = byte_level
    text = "Hello 病院 visit \n\nend "
    result = _result(encoder.encode([text], 512)[0], text)
    found = evidence(result, text, Selection(unit=TOKEN))["x"]
    assert all(not set(text[e.start : e.end]) <= WHITE_SPACE for e in found)
    hospital = next(e for e in found if text[e.start : e.end] == "病")
    counts = {text[e.start : e.end]: e.score for e in found}
    assert hospital.start == 6 and counts["病"] == counts["院"] * 4 / 3  # "Ġ" + 3 bytes, 3 bytes
    by_word = evidence(result, text, Selection(unit=WORD))["x"]
    assert [(e.start, e.end) for e in by_word] == words(text)

"""Leave-one-sentence-out variants encoded only as far as the model reads them equal the whole
variants tokenized (WordPiece and byte-level BPE), on random texts and on a 100,000-character
note."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradlight.runtime.execution.tokenization import TextEncoder
from gradlight.runtime.explanation.ablation import encode_variants, read_until, without_range
from gradlight.runtime.explanation.sentences import removal_range, remove_span, split_sentences

PIECES = [
    "The patient",
    " denies",
    " chest pain",
    ".",
    "!",
    "?",
    " ",
    "  ",
    "\n",
    "\n\n",
    "- ",
    "Dr. Smith",
    " e.g. ",
    " b.i.d.",
    " 2.5 mg",
    "Plan:",
    " No",
    " fever",
    " supercalifragilisticexpialidocious",
    "\u00e9t\u00e9",
    " \u05e9\u05dc\u05d5\u05dd",
    " \U0001f600",
    "e\u0301",
    "\t",
    "A",
    "x" * 40,
    "\x1f",  # Python's isspace() says yes; BERT's normalizer drops it and joins the words
    "\u00a0",
    " " * 300,  # WordPiece drops spaces: a long text the model may still read whole
]
TEXTS = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=6)), max_size=60).map("".join)


def _naive(encoder, text, max_length):
    spans = split_sentences(text)
    if len(spans) < 2:
        return []
    full = encoder.encode([text], max_length)[0]
    variants = encoder.encode([remove_span(text, spans, i) for i in range(len(spans))], max_length)
    return [None if variant.same_input(full) else variant for variant in variants]


def _same(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.same_input(b)
            assert a.offsets == b.offsets and a.truncated == b.truncated


@pytest.fixture(scope="module", params=["bert", "roberta"])
def encoder(request, exported):
    return TextEncoder(exported(request.param) / "tokenizer" / "tokenizer.json")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=TEXTS, max_length=st.sampled_from([6, 12, 24, 64]), chars=st.sampled_from([1, 2, 8]))
def test_variants_equal_the_whole_variants_tokenized(encoder, text, max_length, chars):
    spans = split_sentences(text)
    full = encoder.encode([text], max_length)
    got = encode_variants(encoder, [text], [spans], full, max_length, chars_per_token=chars)[0]
    _same(got if len(spans) > 1 else [], _naive(encoder, text, max_length))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=TEXTS.map(lambda text: f"First one. {text} Then <e>some x</e> here. Last."),
    data=st.data(),
    max_length=st.sampled_from([6, 12, 24, 64]),
)
def test_variants_keeping_a_span_equal_the_whole_variants(encoder, text, data, max_length):
    """With a kept range (a marked entity), the shortcut for what the model reads still gives
    what tokenizing each whole variant gives."""
    spans = split_sentences(text)
    start = data.draw(st.integers(0, len(text) - 1))
    kept = (start, data.draw(st.integers(start + 1, len(text))))
    full = encoder.encode([text], max_length)
    got = encode_variants(encoder, [text], [spans], full, max_length, keep=[kept])[0]
    whole = encoder.encode(
        [without_range(text, *removal_range(spans, i), kept=kept) for i in range(len(spans))],
        max_length,
    )
    _same(got, [None if variant.same_input(full[0]) else variant for variant in whole])


def test_a_kept_span_stays_with_the_whitespace_around_its_sentence():
    text = "One here.  Two <e>x</e> more.  Three."
    spans = split_sentences(text)
    kept = (text.index("<e>"), text.index("</e>") + 4)
    removed = [without_range(text, *removal_range(spans, i), kept=kept) for i in range(3)]
    assert removed[1] == "One here.  <e>x</e>  Three."
    assert removed[0] == text.replace("One here.  ", "")
    # The last sentence's removal begins with the whitespace before it.
    last = "One here.  Two (<e>x</e>) more."
    spans = split_sentences(last)
    kept = (last.index("<e>"), last.index("</e>") + 4)
    assert without_range(last, *removal_range(spans, 1), kept=kept) == "One here.  <e>x</e>"


def test_a_100000_character_note_reads_only_what_the_model_reads(encoder):
    text = " ".join(f"Visit {i} found no chest pain and no fever." for i in range(3000))
    text = text[:100_000]
    spans = split_sentences(text)
    assert len(spans) > 1500
    full = encoder.encode([text], 64)
    limit = read_until(text, full[0])
    assert full[0].truncated and 0 < limit < 1000
    variants = encode_variants(encoder, [text], [spans], full, 64)[0]
    read = [i for i, span in enumerate(spans) if span.start < limit]
    assert 0 < len(read) < 20
    assert all(variant is None for variant in variants[len(read) :])
    # The sentences it reads give the same variants as tokenizing the whole text without them.
    whole = encoder.encode([remove_span(text, spans, i) for i in read], 64)
    _same(variants[: len(read)], [None if v.same_input(full[0]) else v for v in whole])


def test_whole_variants_of_long_texts_are_tokenized_a_few_at_a_time(exported, monkeypatch):
    """A text the model reads whole (WordPiece drops the padding) gets its variants tokenized
    whole, in chunks of about CHUNK_CHARS characters, equal to tokenizing them all at once."""
    from gradlight.runtime.explanation import ablation

    encoder = TextEncoder(exported("bert") / "tokenizer" / "tokenizer.json")
    text = (" " * 5_000).join(f"Note {i} is short." for i in range(12))
    full = encoder.encode([text], 512)
    assert not full[0].truncated
    spans = split_sentences(text)
    monkeypatch.setattr(ablation, "CHUNK_CHARS", 3 * len(text))
    chunked = encode_variants(encoder, [text], [spans], full, 512)[0]
    _same(chunked, _naive(encoder, text, 512))

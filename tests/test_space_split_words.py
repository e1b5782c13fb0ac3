"""Text split at spaces into words, as cnlp_transformers tokenizes (the manifest's
``pre_tokenization`` "split_at_spaces"): the served tokens are those of the pre-tokenized words,
and each token's offsets are exact in the original text, on texts with runs of spaces, tabs,
newlines, accents, CJK, emoji and cnlpt's entity markers. With the tokenizers of the cnlpt
fixtures as cnlpt saved them (tests/fixtures/cnlpt): RoBERTa's byte-level BPE with
``add_prefix_space``, and BERT's WordPiece, which tokenizes the words as it does the text."""

from __future__ import annotations

import pytest
from conftest import CNLPT_FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st
from token_surfaces import check_surfaces
from tokenizers import Tokenizer

from gradlight.artifact.errors import ArtifactError
from gradlight.artifact.manifest import SPLIT_AT_SPACES, WHOLE_TEXT
from gradlight.runtime.execution.tokenization import TextEncoder, offsets_in_text

TOKENIZER = "tokenizer.json"
ROBERTA = CNLPT_FIXTURES / "roberta_tagged" / TOKENIZER
BERT = CNLPT_FIXTURES / "proj_cls" / TOKENIZER

PIECES = [
    "Patient denies",
    " chest pain",
    "<e>",
    " <e> ",
    "</e>",
    " </e>",
    "<s>",
    " ",
    "  ",
    "   ",
    "\t",
    " \t ",
    "\n",
    "\n\n",
    " \n",
    "\r\n",
    "\u3000",
    "\u00a0",
    "肺",
    "東京 病院",
    "\U0001f642",
    "\U0001f469\U0001f3fd\u200d\u2695\ufe0f",
    "Ménière",
    "e\u0301",
    "naïve",
    ".",
]
TEXTS = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), max_size=30).map("".join)
NO_LIMIT = 100_000


@pytest.fixture(scope="module")
def roberta():
    """(the tokenizer as cnlpt saved it, the serving encoder splitting at spaces, its added
    tokens: cnlpt's markers and the specials)."""
    tokenizer = Tokenizer.from_file(str(ROBERTA))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    added = {token.content for token in tokenizer.get_added_tokens_decoder().values()}
    return tokenizer, TextEncoder(ROBERTA, SPLIT_AT_SPACES), added


def test_offsets_move_from_the_words_into_the_text():
    """Words of "a  b\tc ▁": "a", "", "b\tc", "▁". A "Ġ" the tokenizer put before "b" spans
    nothing; a "▁" that is the text's own character spans it."""
    offsets = [(0, 0), (0, 1), (0, 1), (0, 1), (2, 3), (0, 1), (0, 0)]
    word_ids = [None, 0, 2, 2, 2, 3, None]
    tokens = ["<s>", "a", "Ġ", "b", "c", "▁", "</s>"]
    moved = offsets_in_text(["a", "", "b\tc", "▁"], offsets, word_ids, tokens)
    assert moved == [(0, 0), (0, 1), (3, 3), (3, 4), (5, 6), (7, 8), (0, 0)]


def test_spaced_markers_and_runs_of_spaces_give_no_space_tokens(roberta):
    """The whole string has a "Ġ" of its own for each space before a marker and each extra
    space of a run; the words have none, and every other token is the same, with the same
    span, but for the "Ġ" the tokenizer puts before "\tnow" (after the marker "</e>"): it spans
    nothing, where in the whole string it took the tab as well as the tab's own token."""
    _, encoder, added = roberta
    text = "Mother had  <e> breast cancer </e>\tnow"
    (words,) = encoder.encode([text], NO_LIMIT)
    (whole,) = TextEncoder(ROBERTA).encode([text], NO_LIMIT)
    spaces = {("Ġ", (10, 11)), ("Ġ", (11, 12)), ("Ġ", (29, 30))}
    whole_tokens = list(zip(whole.tokens, whole.offsets, strict=True))
    assert spaces <= set(whole_tokens)
    expected = [token for token in whole_tokens if token not in spaces]
    made_up = expected.index(("Ġ", (34, 35)))
    assert expected[made_up + 1] == ("ĉ", (34, 35))
    expected[made_up] = ("Ġ", (34, 34))
    assert list(zip(words.tokens, words.offsets, strict=True)) == expected
    check_surfaces(text, words, added)


def test_a_piece_right_after_a_marker_keeps_its_first_character(roberta):
    """As gradlight marks an entity ("<e>chest", no space): the tokenizer puts a "Ġ" before
    "chest" that is no character of the text; its span is where "chest" starts."""
    _, encoder, added = roberta
    text = "Patient denies <e>chest pain</e> today."
    (encoded,) = encoder.encode([text], NO_LIMIT)
    spans = dict(zip(encoded.tokens, encoded.offsets, strict=True))
    assert text[slice(*spans["Ġchest"])] == "chest"
    check_surfaces(text, encoded, added)


@settings(max_examples=300, deadline=None)
@given(text=TEXTS)
def test_word_tokens_are_the_pretokenized_words_with_exact_offsets(roberta, text):
    tokenizer, encoder, added = roberta
    (encoded,) = encoder.encode([text], NO_LIMIT)
    reference = tokenizer.encode(text.split(" "), is_pretokenized=True)
    assert list(encoded.ids) == reference.ids
    assert encoded.tokens == tuple(reference.tokens)
    assert encoded.special == (True,) + (False,) * (len(encoded) - 2) + (True,)
    assert not encoded.truncated
    check_surfaces(text, encoded, added)


@pytest.fixture(scope="module")
def transformers_roberta():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ROBERTA.parent, local_files_only=True)


@settings(max_examples=100, deadline=None)
@given(text=TEXTS)
def test_transformers_splits_the_words_the_same(roberta, transformers_roberta, text):
    """The ids of transformers' ``is_split_into_words=True`` (what cnlpt calls) on
    ``text.split(" ")``."""
    _, encoder, _ = roberta
    expected = transformers_roberta(
        text.split(" "), is_split_into_words=True, padding=False, truncation=False
    )
    assert list(encoder.encode([text], NO_LIMIT)[0].ids) == expected["input_ids"]


@settings(max_examples=100, deadline=None)
@given(text=TEXTS, max_length=st.sampled_from([3, 5, 8, 16]))
def test_truncation_keeps_the_first_tokens_and_says_so(roberta, text, max_length):
    _, encoder, _ = roberta
    (full,) = encoder.encode([text], NO_LIMIT)
    (cut,) = encoder.encode([text], max_length)
    assert cut.truncated == (len(full) > max_length)
    kept = min(len(full), max_length) - 1
    assert list(cut.ids[:-1]) == list(full.ids[:kept])
    assert cut.offsets[:-1] == full.offsets[:kept]
    assert cut.special == (True,) + (False,) * (len(cut) - 2) + (True,)


@pytest.fixture(scope="module")
def bert():
    return TextEncoder(BERT, SPLIT_AT_SPACES), TextEncoder(BERT, WHOLE_TEXT)


@settings(max_examples=200, deadline=None)
@given(text=TEXTS)
def test_bert_tokenizes_the_words_as_the_text(bert, text):
    """BERT's pre-tokenizer splits at whitespace anyway: the same tokens and offsets."""
    words = bert[0].encode([text], NO_LIMIT)[0]
    whole = bert[1].encode([text], NO_LIMIT)[0]
    assert words.tokens == whole.tokens
    assert words.offsets == whole.offsets
    assert words.special == whole.special


def test_an_unknown_pre_tokenization_is_refused():
    with pytest.raises(ArtifactError, match="unknown pre_tokenization 'sentencepiece'"):
        TextEncoder(ROBERTA, "sentencepiece")

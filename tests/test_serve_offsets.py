# ruff: noqa: RUF001 (unusual characters on purpose)
"""Character offsets of served tokens are code point offsets into the original text, right for
accents, CJK, emoji and other non-BMP characters; with the real MiniLM tokenizer and byte-level
BPE, whose space tokens ("Ġ" before a CJK character) are served with the span of their space."""

from __future__ import annotations

import pytest
from serving import ServerThread
from tokenizers import Tokenizer

from gradlight.client import Client
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.settings import EngineSettings

TEXTS = [
    "Café au lait spots noted, naïve to treatment — 病院 visit 😀.",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters, e\u0301 combining accent, עברית right-to-left, 🇫🇷 flag.",
    "Patient denies chest pain.\nNo fever 🤒 or chills; résumé attached.",
]


def _check_offsets(result, text):
    previous = 0
    for token in result.tokens:
        if token.special:
            assert (token.start, token.end) == (0, 0)
            continue
        # Every token has a span, a token standing for whitespace alone too (byte-level "Ġ":
        # its space, "Ċ": its newline).
        assert 0 <= token.start < token.end <= len(text)
        assert token.start >= previous
        previous = token.start
        # No token's span carries surrounding whitespace, unless the token stands for
        # whitespace alone.
        surface = text[token.start : token.end]
        assert surface.strip() in (surface, "")
        if set(token.token) == {"Ġ"}:
            assert surface == " " * len(token.token)


@pytest.fixture(scope="module")
def minilm_client(minilm):
    _, artifact = minilm
    engine = Engine(artifact, EngineSettings(provider="cpu"))
    with ServerThread({"minilm": engine}) as server, Client(server.address) as client:
        yield client, Tokenizer.from_file(str(artifact / "tokenizer" / "tokenizer.json"))


def test_minilm_offsets_give_each_tokens_surface(minilm_client):
    client, tokenizer = minilm_client
    response = client.attribute(TEXTS, sentence_attributions=True)
    for text, result in zip(TEXTS, response.results, strict=True):
        assert result.text == text
        _check_offsets(result, text)
        for token in result.tokens:
            if token.special or token.token == "[UNK]":
                continue
            surface = text[token.start : token.end]
            assert tokenizer.normalizer.normalize_str(surface) == token.token.removeprefix("##")
        for sentence in result.sentences:
            assert text[sentence.start : sentence.end] == sentence.sentence
    emoji = next(t for t in response.results[0].tokens if TEXTS[0][t.start : t.end] == "😀")
    assert emoji.start == TEXTS[0].index("😀")  # one code point, not two UTF-16 units


def test_byte_level_bpe_offsets(tiny_client):
    response = tiny_client.attribute(TEXTS, model="roberta")
    for text, result in zip(TEXTS, response.results, strict=True):
        _check_offsets(result, text)
        # Every non-space character of what the model saw is covered by some token: all of the
        # text, or (truncated: math letters are 4 bytes, so 4 tokens each) a prefix of it.
        covered = set()
        for token in result.tokens:
            covered.update(range(token.start, token.end))
        seen = max(token.end for token in result.tokens)
        assert result.truncated == (seen < len(text.rstrip()))
        assert {i for i, char in enumerate(text[:seen]) if not char.isspace()} <= covered
    assert [result.truncated for result in response.results] == [False, True, False]
    spaces = [t for r in response.results for t in r.tokens if set(t.token) == {"Ġ"}]
    assert spaces  # a space token standing alone ("Ġ" before "病"), served with its space

"""One definition of what a word is (runtime/execution/words.py), and the visualizer's JavaScript
(its
``words()``, white space, token and word items) giving the same answers in real headless
Chromium on tricky strings: CJK, emoji sequences, combining marks, apostrophes, the characters
where Python's and JavaScript's ideas of white space differ."""

from __future__ import annotations

import random
import sys
import unicodedata

import pytest
import regex
from tiny_models import _bpe_tokenizer
from visualizer_page import standalone_page

from gradlight.bulk.evidence import TOKEN, WORD, _items
from gradlight.runtime.execution.tokenization import TextEncoder
from gradlight.runtime.execution.words import WHITE_SPACE, is_blank, token_words, words
from gradlight.v1 import gradlight_pb2 as pb

WOMAN_HEALTH_WORKER = "\U0001f469\U0001f3fd\u200d\u2695\ufe0f"  # skin tone, ZWJ, VS16
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
FLAG = "\U0001f1eb\U0001f1f7"
ENGLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
KEYCAP = "#\ufe0f\u20e3"

TRICKY = [
    "",
    "The patient denies chest pain.",
    "don't stop; rock'n'roll, 'quoted' and O\u2019Brien\u2019s x-ray 2.5mg 1's",
    "caf\u00e9 na\u0131\u0308ve e\u0301t\u00e9 \u0301leading-mark",
    "\u6771\u4eac\u306b\u884c\u304d\u307e\u3059\u3002\u75c5\u9662\u3000\u30c6\u30b9\u30c8\uff01",
    f"{WOMAN_HEALTH_WORKER} {FAMILY}{FLAG}{FLAG}{FLAG[0]} {ENGLAND} {KEYCAP} 1\ufe0f\u20e3",
    "\U0001f44d\U0001f3fb\U0001f600\u200d \u200d\U0001f600 a\u200db \u0915\u094d\u200d\u0937",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e\u0964 \u0939\u093e",
    "\u0645\u0631\u062d\u0628\u0627\u061f \u0634\u0643\u0631\u0627\u06d4 \u05e9\u05dc\u05d5\u05dd",
    "a\x1cb\x1dc\x1ed\x1fe\ufefff\u00a0g\u3000h\ti\nj\rk\x0bl\x0cm\x85n\u2028o\u2029p\u200bq",
    "\u2003\u202f\u205f\u1680x\u180ey\u2060z\t\t  \n\n",
    "\U0001d518\U0001d52b\U0001d526 \U00020000\U0002a6d6 \ud55c\uad6d\uc5b4 '\u2019' ''a",
]
# Characters for random strings: one of each kind the rule tells apart.
ALPHABET = (
    "aZ\u00e9\u0131\u6771\u304b\u30c6\ud55c\u0915\u0645\u05e90\u0665\u00bd\u2167"  # L, N
    "\u0301\u094d\u20e3\ufe0f\u0903"  # M
    "'\u2019\u200c\u200d\u2060\u200b\ufeff"  # apostrophes, joiners, other format characters
    ".,;-!?\u3002\u0964$+<\u00a9"  # punctuation, symbols
    "\U0001f600\U0001f469\U0001f3fd\U0001f1eb\U0001f1f7\U000e0067\U000e007f\U0001d518"
    " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u00a0\u2028\u3000\u2009"  # spaces and near-spaces
)


def _surfaces(text):
    return [text[a:b] for a, b in words(text)]


def test_white_space_is_unicodes_white_space():
    """``str.isspace`` less U+001C..U+001F, and exactly the ``regex`` package's
    \\p{White_Space}."""
    spaces = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert spaces - WHITE_SPACE == set("\x1c\x1d\x1e\x1f") and spaces >= WHITE_SPACE
    assert {c for c in spaces | {"\ufeff"} if regex.fullmatch(r"\p{White_Space}", c)} == (
        WHITE_SPACE
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("don't stop", ["don't", "stop"]),
        ("rock'n'roll 'quoted'", ["rock'n'roll", "'", "quoted", "'"]),
        ("O\u2019Brien\u2019s 1's", ["O\u2019Brien\u2019s", "1's"]),
        ("x-ray 2.5mg", ["x", "-", "ray", "2", ".", "5mg"]),
        ("e\u0301t\u00e9 \u0301x", ["e\u0301t\u00e9", "\u0301x"]),
        ("\u6771\u4eac\u3002\u75c5\u9662", ["\u6771\u4eac", "\u3002", "\u75c5\u9662"]),
        (
            f"{WOMAN_HEALTH_WORKER}{FAMILY} {FLAG}{FLAG}{FLAG[0]}",
            [WOMAN_HEALTH_WORKER, FAMILY, FLAG, FLAG, FLAG[0]],
        ),
        (f"{ENGLAND}{KEYCAP}1\ufe0f\u20e3", [ENGLAND, KEYCAP, "1\ufe0f\u20e3"]),
        ("\u0915\u094d\u200d\u0937 a\u200d", ["\u0915\u094d\u200d\u0937", "a", "\u200d"]),
        ("a\x1cb\ufeffc\u00a0d\u3000e\x85f", ["a", "\x1c", "b", "\ufeff", "c", "d", "e", "f"]),
        # A joiner with nothing to join (a space after it, nothing before it) stands alone.
        ("\U0001f600\u200d \u200d\U0001f600", ["\U0001f600", "\u200d", "\u200d", "\U0001f600"]),
    ],
)
def test_words(text, expected):
    assert _surfaces(text) == expected


def test_a_token_belongs_to_the_word_at_or_after_its_start():
    text = "  Hello, world  "
    spans = words(text)  # Hello , world
    starts = [0, 2, 4, 7, 8, 10, 14, 15]
    assert token_words(spans, starts) == [0, 0, 0, 1, 2, 2, 2, 2]
    assert token_words([], [0, 1]) == [None, None]
    assert token_words([(0, 2)], [3]) == [None]  # past the last word, which has no token


def _random_texts(count, seed=7):
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 24))) for _ in range(count)]


@pytest.fixture(scope="module")
def page():
    with standalone_page() as page:
        yield page


def test_the_pages_words_are_pythons(page):
    texts = TRICKY + _random_texts(3000)
    # Unicode versions differ (Python's tables here, the browser's there); every character of
    # these texts is one both assign, with the same category.
    assert all(unicodedata.category(c) != "Cn" for text in texts for c in text)
    got = page.evaluate("texts => texts.map((text) => words(text))", texts)
    for text, spans in zip(texts, got, strict=True):
        assert [tuple(span) for span in spans] == words(text), ascii(text)


def test_the_pages_white_space_is_pythons(page):
    characters = [chr(c) for c in range(0x3001)] + ["\ufeff", "\u180e", "\u200b", "\u2060"]
    characters = [c for c in characters if not 0xD800 <= ord(c) <= 0xDFFF]
    got = page.evaluate("chars => chars.map((c) => BLANK.test(c))", characters)
    assert [c for c, blank in zip(characters, got, strict=True) if blank] == sorted(WHITE_SPACE)
    assert all(is_blank(c) == blank for c, blank in zip(characters, got, strict=True))


def _result(text, encoded):
    result = pb.TextResult(text=text)
    for token, (start, end), special in zip(
        encoded.tokens, encoded.offsets, encoded.special, strict=True
    ):
        result.tokens.add(token=token, start=start, end=end, special=special)
    return result


def test_the_pages_items_are_the_evidences(page, tmp_path):
    """Token items (pieces of a character merged, a space token joining the item after it) and
    word items group the same tokens in the page as in bulk/evidence.py, on byte-level BPE
    tokens of tricky texts."""
    path = tmp_path / "tokenizer.json"
    _bpe_tokenizer(400).save(str(path))
    encoder = TextEncoder(path)
    texts = [*TRICKY[1:], "Hello \u75c5\u9662 visit \n\nend ", "a  b   c ", *_random_texts(200)]
    results = [_result(text, e) for text, e in zip(texts, encoder.encode(texts, 512), strict=True)]
    tokens = [
        [{"start": t.start, "end": t.end, "special": t.special, "token": t.token} for t in r.tokens]
        for r in results
    ]
    got = page.evaluate(
        """([texts, tokens]) => texts.map((text, i) => [
            tokenItems(tokens[i], Array.from(text)).map((it) => [it.start, it.end, it.tokens]),
            wordItems(tokens[i], text).map((it) => [it.start, it.tokens]),
        ])""",
        [texts, tokens],
    )
    for text, result, (token_items, word_items) in zip(texts, results, got, strict=True):
        expected = [
            [None, None, t] if a == -1 else [a, b, t] for a, b, t in _items(result, text, (), TOKEN)
        ]
        assert token_items == expected, ascii(text)
        # (The page draws a word item to its last token's end; the evidence keeps the word.)
        expected_words = [
            [None if a == -1 else a, t] for a, _, t in _items(result, text, words(text), WORD)
        ]
        assert word_items == expected_words, ascii(text)


def test_the_meaning_checks_words_are_the_evidences(tmp_path):
    """bench/meaning.py ranks the same words as the evidence (those with a letter or digit),
    each scored with the tokens the evidence gives it."""
    from gradlight.bench.meaning import word_scores
    from gradlight.bulk.evidence import Selection, evidence

    path = tmp_path / "tokenizer.json"
    _bpe_tokenizer(400).save(str(path))
    text = "Patient denies chest pain; r\u00e9sum\u00e9 \u6771\u4eac don't \U0001f600 x-ray."
    result = _result(text, TextEncoder(path).encode([text], 512)[0])
    result.labels.append("x")
    for index, token in enumerate(result.tokens):
        token.raw_scores.append(0.0 if token.special else (-1) ** index * (1 + index % 5))
    scored = word_scores(result, 0)
    assert [text[a:b] for a, b, _ in scored] == [
        "Patient", "denies", "chest", "pain", "r\u00e9sum\u00e9", "\u6771\u4eac", "don't", "x",
        "ray",
    ]  # fmt: skip
    # The evidence is the same sums over the same tokens, normalized (over punctuation too).
    found = {(e.start, e.end): e.score for e in evidence(result, text, Selection(unit=WORD))["x"]}
    strongest = max(scored, key=lambda item: abs(item[2]))
    scale = strongest[2] / found[strongest[:2]]
    for start, end, total in scored:
        assert found.get((start, end), 0.0) * scale == pytest.approx(total, abs=1e-6)

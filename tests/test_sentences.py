# ruff: noqa: RUF001 (unusual characters on purpose)
"""Sentence splitting with offsets on clinical and general text."""

from __future__ import annotations

import time

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from gradlight.runtime.explanation.sentences import remove_span, split_sentences


def _split(text):
    return [text[span.start : span.end] for span in split_sentences(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Seen by Dr. Smith today. Takes aspirin 2.5 mg b.i.d. for pain. Denies fever, e.g. "
            "no chills. Plan: follow up.",
            [
                "Seen by Dr. Smith today.",
                "Takes aspirin 2.5 mg b.i.d. for pain.",
                "Denies fever, e.g. no chills.",
                "Plan: follow up.",
            ],
        ),
        (
            "HPI: 45 yo male.\nMeds:\n- Aspirin 81 mg daily\n- Metoprolol 25 mg b.i.d.\n"
            "1. Chest pain\n2) Cough\n\nAssessment and plan as above",
            [
                "HPI: 45 yo male.",
                "Meds:",
                "- Aspirin 81 mg daily",
                "- Metoprolol 25 mg b.i.d.",
                "1. Chest pain",
                "2) Cough",
                "Assessment and plan as above",
            ],
        ),
        (
            "Weight is 82 kg. She walks daily. Dose 5 mg. Temperature 36.8 C. Seen at 9 a.m. "
            "today.",
            [
                "Weight is 82 kg.",
                "She walks daily.",
                "Dose 5 mg.",
                "Temperature 36.8 C.",
                "Seen at 9 a.m. today.",
            ],
        ),
        (
            "A line hard wrapped at the margin goes\non to the next line. Next one! Really? yes.",
            [
                "A line hard wrapped at the margin goes\non to the next line.",
                "Next one!",
                "Really? yes.",
            ],
        ),
        (
            'He said "Stop." Then he left. J. Smith agreed.',
            ['He said "Stop."', "Then he left.", "J. Smith agreed."],
        ),
        (
            "Temperature 38.5. Pulse 90 vs. 110 yesterday.",
            ["Temperature 38.5.", "Pulse 90 vs. 110 yesterday."],
        ),
        ("One sentence only", ["One sentence only"]),
        ("Ça va. Très bien! 東京に行きます。", ["Ça va.", "Très bien! 東京に行きます。"]),
        ("", []),
        (" \n\t ", []),
    ],
)
def test_split(text, expected):
    assert _split(text) == expected


def test_spans_are_ordered_disjoint_and_cover_the_text_up_to_whitespace():
    text = "  First one.  Second one?\n\n- item one\n- item two\nLast line without stop "
    spans = split_sentences(text)
    covered = set()
    previous_end = 0
    for span in spans:
        assert previous_end <= span.start < span.end <= len(text)
        assert not text[span.start].isspace()
        assert not text[span.end - 1].isspace()
        assert text[previous_end : span.start].strip() == ""
        covered.update(range(span.start, span.end))
        previous_end = span.end
    assert text[previous_end:].strip() == ""
    assert {i for i, char in enumerate(text) if not char.isspace()} <= covered


def test_removing_a_sentence_keeps_the_rest_as_written():
    text = "First one.\nSecond  one. Third one."
    spans = split_sentences(text)
    assert remove_span(text, spans, 0) == "Second  one. Third one."
    assert remove_span(text, spans, 1) == "First one.\nThird one."
    assert remove_span(text, spans, 2) == "First one.\nSecond  one."


@pytest.mark.parametrize(
    "text",
    [
        "." * 200_000 + "x",  # a run of periods with no space after it
        " " * 100_000 + "A. " * 33_000,  # one line: long indent, then many initials
        ("\n" + " " * 40 + "1. Item. ") * 4_000,  # indented list items
        ('. "' + '"' * 50 + "x") * 4_000,
        (": " * 20 + "x\n") * 4_000,
        ("a." * 50 + " B ") * 2_000,
        " ".join(f"Visit {i}: the patient denies chest pain, e.g. at night." for i in range(4_000)),
    ],
    ids=["periods", "indented-initials", "indented-list", "quotes", "colons", "dots", "prose"],
)
def test_splitting_is_linear_on_hostile_text(text):
    """A complexity guard, not a speed test: each of these ~200,000-character texts splits in
    about 10-50 ms here; the quadratic splitter took minutes on some of them, holding the
    interpreter lock (and so the whole server) all that time."""
    started = time.perf_counter()
    spans = split_sentences(text)
    assert time.perf_counter() - started < 10
    assert all(0 <= span.start < span.end <= len(text) for span in spans)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # Chinese: no space after the full stop
            "病人否认胸痛。无发热！需要复查吗？是的。",
            ["病人否认胸痛。", "无发热！", "需要复查吗？", "是的。"],
        ),
        (  # Japanese: closing brackets stay with their sentence; halfwidth full stop
            "彼は「行きます。」と言った。明日は晴れ｡ 本当？！はい",
            ["彼は「行きます。」", "と言った。", "明日は晴れ｡", "本当？！", "はい"],
        ),
        (  # fullwidth digits keep their decimal point
            "薬は３．５ｍｇです。次回．終わり",
            ["薬は３．５ｍｇです。", "次回．", "終わり"],
        ),
        (  # Hindi: danda and double danda
            "रोगी को बुखार नहीं है। खांसी है॥ ठीक है",
            ["रोगी को बुखार नहीं है।", "खांसी है॥", "ठीक है"],
        ),
        (  # Arabic question mark, Urdu full stop
            "هل يوجد ألم؟ لا يوجد ألم۔ شكرا",
            ["هل يوجد ألم؟", "لا يوجد ألم۔", "شكرا"],
        ),
        (  # Ethiopic, Armenian, and the double marks in English
            "ደህና ነው። Բարեւ։ Wow‼ really⁉ yes⁇ no",
            ["ደህና ነው።", "Բարեւ։", "Wow‼", "really⁉", "yes⁇", "no"],
        ),
        (  # mixed: "." "!" "?" keep the English rules (a CJK word after them is not a
            # sentence-like start, as in test_split's "Très bien! 東京に行きます。")
            "Seen by Dr. Smith. Fine. 患者は元気です。He is fine! 好。Ok",
            ["Seen by Dr. Smith.", "Fine. 患者は元気です。", "He is fine! 好。", "Ok"],
        ),
    ],
)
def test_split_at_other_scripts_terminators(text, expected):
    assert _split(text) == expected


def test_other_terminators_are_unicodes_sentence_terminal():
    """The listed code points are Unicode's Sentence_Terminal less ASCII . ! ? (checked against
    the ``regex`` package's tables, where it is installed)."""
    import re
    import sys

    from gradlight.runtime.explanation.sentences import _OTHER_TERMINALS

    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    listed = set(re.findall(f"[{_OTHER_TERMINALS}]", everything))
    assert listed == set(regex.findall(r"\p{STerm}", everything)) - set(".!?")
    assert set("。！？．｡‼⁇⁈⁉।॥؟۔።։") <= listed


PIECES = [
    "Patient denies pain",
    ". ",
    "! ",
    "?",
    "。",
    "！",
    "？",
    "．",
    "।",
    "؟",
    "‼",
    "」",
    "”",
    ")",
    " ",
    "\n",
    "\n\n",
    "- ",
    "1. ",
    "Dr. ",
    "３",
    "2.5",
    "東京",
    "हिंदी",
    "عربي",
]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=3)), max_size=40).map("".join))
def test_spans_cover_the_text_in_order(text):
    spans = split_sentences(text)
    previous_end = 0
    for span in spans:
        assert previous_end <= span.start < span.end <= len(text)
        assert not text[span.start].isspace() and not text[span.end - 1].isspace()
        assert text[previous_end : span.start].strip() == ""
        previous_end = span.end
    assert text[previous_end:].strip() == ""


@pytest.mark.parametrize(
    "text",
    [
        "。" * 200_000 + "x",
        ("３．" * 50_000) + "５",
        "!。" * 100_000,
        ("a。」" + "」" * 50) * 2_000,
    ],
    ids=["full-stops", "fullwidth-decimals", "mixed-marks", "closers"],
)
def test_splitting_at_other_terminators_is_linear(text):
    started = time.perf_counter()
    spans = split_sentences(text)
    assert time.perf_counter() - started < 10
    assert all(0 <= span.start < span.end <= len(text) for span in spans)

"""The clinical assertion dataset the demo classifier is trained on, written by us.

Each note is 1 to 5 sentences: an *assertion sentence*, which mentions a finding and says
whether the patient has it (``affirmed``), does not have it (``negated``) or may have it
(``uncertain``), and 0 to 4 *neutral sentences* (vitals, plans, social history) that mention
no finding (some hold a cue word about something else: "She has no pets."). The note's label is
the assertion's. A quarter of the training notes hold 1 or 2 more assertion sentences with the
same label ("Denies fever. ... No cough."), as real notes do; held-out notes hold exactly one.

Assertion templates (``assertion_vocabulary``) mark their cue phrase in brackets
(``"Patient [denies] {f}."``); the brackets are dropped from the text and the cue's character
span is kept, so a test can ask whether an explanation points at it. ``{f}`` is the finding
(``{F}``: capitalized).

The held-out split uses assertion templates, neutral sentences and findings that the training
split never contains: it measures whether the model learned the cues rather than the sentences.
The cue vocabulary itself is shared (a model cannot learn a cue it has never seen). In training,
findings sometimes carry a modifier ("severe"), assertions a time phrase ("since yesterday"),
and neutral sentences are drawn from frames with slots (names, drugs, numbers, places), so
that the words around a cue vary and only the cue decides the label.

Everything is generated from the lists below with a fixed seed; the generated files ship with
the package (``demo/data/assertion/*.jsonl``) and a test checks that they are exactly what
this module generates. Regenerate with ``python -m gradlight.demo.assertion_data``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from gradlight.demo.assertion_vocabulary import (
    EVERYDAY,
    HELDOUT_FINDINGS,
    HELDOUT_NEUTRAL,
    HELDOUT_TEMPLATES,
    MODIFIERS,
    MORE_ASSERTIONS,
    NEUTRAL_FRAMES,
    PRONOUNS,
    SLOTS,
    TRAIN_FINDINGS,
    TRAIN_TEMPLATES,
    WHEN,
)

LABELS = ("affirmed", "negated", "uncertain")
SEED = 20261125
TRAIN_NOTES = 1800
HELDOUT_NOTES = 300


@dataclass(frozen=True)
class Note:
    """One example. Spans are ``[start, end)`` code point offsets into ``text``."""

    id: str
    text: str
    label: str
    cue: tuple[int, int]  # the cue phrase, e.g. "cannot rule out"
    finding: tuple[int, int]
    assertion_sentence: tuple[int, int]
    sentences: int
    template: str
    # Training notes only, sometimes: the cue spans of further assertion sentences with the
    # same label ("Denies fever. No cough."), in order.
    more_cues: tuple[tuple[int, int], ...] = ()

    @property
    def cue_text(self) -> str:
        return self.text[self.cue[0] : self.cue[1]]

    @property
    def cues(self) -> tuple[tuple[int, int], ...]:
        return (self.cue, *self.more_cues)


_CUE = re.compile(r"\[([^\]]+)\]")


def _assertion(
    template: str, finding: str, when: str = ""
) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """The sentence, its cue span and its finding span (offsets within the sentence)."""
    template = template.replace("{when}", when)
    slot = "{F}" if "{F}" in template else "{f}"
    surface = finding[0].upper() + finding[1:] if slot == "{F}" else finding
    before, after = template.split(slot)
    cue_start = cue_end = -1
    pieces: list[str] = []
    length = 0
    finding_span = (0, 0)
    for part_index, part in enumerate((before, after)):
        for chunk_index, chunk in enumerate(_CUE.split(part)):
            if chunk_index % 2 == 1:  # the cue itself
                cue_start, cue_end = length, length + len(chunk)
            pieces.append(chunk)
            length += len(chunk)
        if part_index == 0:
            finding_span = (length, length + len(surface))
            pieces.append(surface)
            length += len(surface)
    if cue_start < 0:
        raise ValueError(f"template without a [cue]: {template!r}")
    return "".join(pieces), (cue_start, cue_end), finding_span


def _neutral_sentence(rng: random.Random) -> str:
    frame = rng.choice(NEUTRAL_FRAMES)
    they, them, their = rng.choice(PRONOUNS)
    numbers = {
        "n": rng.randint(2, 6), "sys": rng.randint(100, 160), "dia": rng.randint(60, 95),
        "hr": rng.randint(55, 110), "age": rng.randint(19, 94), "kg": rng.randint(45, 130),
        "temp": f"{rng.uniform(36.0, 37.4):.1f}", "sat": rng.randint(92, 100),
    }  # fmt: skip
    values = {key: rng.choice(options) for key, options in {**SLOTS, **EVERYDAY}.items()}
    values["Doctor"] = values["doctor"][0].upper() + values["doctor"][1:]
    values["Name"] = values.pop("name")
    return frame.format(
        They=they, them=them, their=their, Their=their.capitalize(), **numbers, **values
    )


def _notes(
    split: str,
    count: int,
    rng: random.Random,
) -> Iterator[Note]:
    training = split == "train"
    templates = TRAIN_TEMPLATES if training else HELDOUT_TEMPLATES
    findings = TRAIN_FINDINGS if training else HELDOUT_FINDINGS
    for index in range(count):
        label = LABELS[index % len(LABELS)]  # balanced labels
        template = rng.choice([t for lab, t in templates if lab == label])
        finding = rng.choice(findings)
        when = ""
        if training:
            if rng.random() < 0.35:
                finding = f"{rng.choice(MODIFIERS)} {finding}"
            if rng.random() < 0.5:
                when = rng.choice(WHEN)
        sentence, cue, finding_span = _assertion(template, finding, when)
        count_others = rng.choice((0, 0, 1, 1, 2, 2, 3, 4))
        more: list[tuple[str, tuple[int, int]]] = []  # (sentence, cue span in it)
        if training:
            others: list[str] = []
            while len(others) < count_others:
                candidate = _neutral_sentence(rng)
                if candidate not in others:
                    others.append(candidate)
            if rng.random() < MORE_ASSERTIONS:
                more = _more_assertions(rng, label, template, finding, 4 - count_others)
        else:
            others = rng.sample(list(HELDOUT_NEUTRAL), count_others)
        position = rng.randint(0, len(others))
        sentences = [*others[:position], sentence, *others[position:]]
        for extra, _ in more:  # after the first assertion, between or after the others
            sentences.insert(rng.randint(position + 1, len(sentences)), extra)
        starts = _starts(sentences)
        start = starts[position]
        more_cues = []
        for extra, (cue_start, cue_end) in more:
            at = starts[sentences.index(extra)]
            more_cues.append((at + cue_start, at + cue_end))
        yield Note(
            id=f"{split}-{index:05d}",
            text=" ".join(sentences),
            label=label,
            cue=(start + cue[0], start + cue[1]),
            finding=(start + finding_span[0], start + finding_span[1]),
            assertion_sentence=(start, start + len(sentence)),
            sentences=len(sentences),
            template=template,
            more_cues=tuple(sorted(more_cues)),
        )


def _more_assertions(
    rng: random.Random, label: str, template: str, finding: str, room: int
) -> list[tuple[str, tuple[int, int]]]:
    """1 or 2 more assertion sentences with the note's label (other templates and findings)."""
    count = min(room, rng.choice((1, 1, 2)))
    templates = [t for lab, t in TRAIN_TEMPLATES if lab == label and t != template]
    findings = [f for f in TRAIN_FINDINGS if f not in finding]
    more = []
    pairs = zip(rng.sample(templates, count), rng.sample(findings, count), strict=True)
    for chosen, other in pairs:
        sentence, cue, _ = _assertion(chosen, other, "")
        more.append((sentence, cue))
    return more


def _starts(sentences: list[str]) -> list[int]:
    starts, offset = [], 0
    for sentence in sentences:
        starts.append(offset)
        offset += len(sentence) + 1
    return starts


def generate() -> dict[str, list[Note]]:
    """Both splits, exactly as shipped."""
    rng = random.Random(SEED)
    return {
        "train": list(_notes("train", TRAIN_NOTES, rng)),
        "heldout": list(_notes("heldout", HELDOUT_NOTES, rng)),
    }


def _data_dir() -> Path:
    return Path(str(resources.files("gradlight.demo").joinpath("data/assertion")))


def load(split: str) -> list[Note]:
    """The shipped split (``train`` or ``heldout``)."""
    path = _data_dir() / f"{split}.jsonl"
    notes = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            for key in ("cue", "finding", "assertion_sentence"):
                row[key] = tuple(row[key])
            row["more_cues"] = tuple(tuple(span) for span in row.get("more_cues", ()))
            notes.append(Note(**row))
    return notes


def write(directory: Path | None = None) -> dict[str, Path]:
    directory = directory or _data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, notes in generate().items():
        path = directory / f"{split}.jsonl"
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            for note in notes:
                handle.write(json.dumps(asdict(note), ensure_ascii=False) + "\n")
        paths[split] = path
    return paths


if __name__ == "__main__":
    for split, path in write().items():
        print(f"{split}: {path}")

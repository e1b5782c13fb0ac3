"""The clinical assertion dataset the demo classifier is trained on, written by us.

Each note is 1 to 5 sentences: an *assertion sentence*, which mentions a finding and says
whether the patient has it (``affirmed``), does not have it (``negated``) or may have it
(``uncertain``), and 0 to 4 *neutral sentences* (vitals, plans, social history) that mention
no finding (some hold a cue word about something else: "She has no pets."). The note's label is
the assertion's. A quarter of the training notes hold 1 or 2 more assertion sentences with the
same label ("Denies fever. ... No cough."), as real notes do; held-out notes hold exactly one.

Assertion templates mark their cue phrase in brackets (``"Patient [denies] {f}."``); the
brackets are dropped from the text and the cue's character span is kept, so a test can ask
whether an explanation points at it. ``{f}`` is the finding (``{F}``: capitalized).

The held-out split uses assertion templates, neutral sentences and findings that the training
split never contains: it measures whether the model learned the cues rather than the sentences.
The cue vocabulary itself is shared (a model cannot learn a cue it has never seen). In training,
findings sometimes carry a modifier ("severe"), assertions a time phrase ("since yesterday"),
and neutral sentences are drawn from frames with slots (names, drugs, numbers, places), so
that the words around a cue vary and only the cue decides the label.

Everything is generated from the lists below with a fixed seed; the generated files ship with
the package (``export/data/assertion/*.jsonl``) and a test checks that they are exactly what
this module generates. Regenerate with ``python -m gradlight.export.assertion_data``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

LABELS = ("affirmed", "negated", "uncertain")
SEED = 20261125
TRAIN_NOTES = 1800
HELDOUT_NOTES = 300

# ---- assertion templates: (label, template); the cue phrase in [brackets] ----
# {f}: the finding, in training sometimes with a modifier ("severe cough"); {F}: capitalized;
# {when}: in training, an optional time or place phrase (" since yesterday") or nothing.

TRAIN_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("affirmed", "Patient [reports] {f}{when}."),
    ("affirmed", "She [reports] {f}{when}."),
    ("affirmed", "He [complains of] {f}{when}."),
    ("affirmed", "The patient [presents with] {f}{when}."),
    ("affirmed", "Exam is [positive for] {f}."),
    ("affirmed", "Chest film [shows] {f}."),
    ("affirmed", "She [has] {f}{when}."),
    ("affirmed", "He [endorses] {f}{when}."),
    ("affirmed", "{F} was [confirmed] on examination."),
    ("affirmed", "Findings are [consistent with] {f}."),
    ("affirmed", "The patient [was diagnosed with] {f}{when}."),
    ("affirmed", "Today he [reports] {f}{when}."),
    ("affirmed", "He [reported] {f}{when}."),
    ("negated", "Patient [denies] {f}{when}."),
    ("negated", "She [denies] any {f}{when}."),
    ("negated", "[No] {f}{when}."),
    ("negated", "There is [no] evidence of {f}."),
    ("negated", "He has [no] {f}{when}."),
    ("negated", "The patient is [without] {f}{when}."),
    ("negated", "Exam is [negative for] {f}."),
    ("negated", "She [denied] {f} on review of systems."),
    ("negated", "[No] signs of {f} were seen."),
    ("negated", "Imaging [ruled out] {f}."),
    ("negated", "He is [free of] {f}{when}."),
    ("negated", "Presents [without] {f} or distress."),
    # A negation beats a reporting verb: "reports" alone would mean affirmed.
    ("negated", "She reports [no] {f}{when}."),
    ("negated", "He reported [no] {f}{when}."),
    ("negated", "The patient has had [no] {f}{when}."),
    ("uncertain", "[Possible] {f}{when}."),
    ("uncertain", "[Cannot rule out] {f}{when}."),
    ("uncertain", "Findings [may represent] {f}."),
    ("uncertain", "[Concern for] {f} on the latest film."),
    ("uncertain", "She [possibly] has {f}{when}."),
    ("uncertain", "The picture is [suspicious for] {f}."),
    ("uncertain", "[Questionable] {f} on exam."),
    ("uncertain", "[Differential includes] {f}."),
    ("uncertain", "He [may have] {f}{when}."),
    ("uncertain", "[Probable] {f}, to be confirmed."),
    ("uncertain", "We [cannot exclude] {f}{when}."),
    ("uncertain", "Symptoms are [concerning for] {f}."),
    ("uncertain", "She reports [possible] {f}{when}."),
)

HELDOUT_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("affirmed", "On arrival she [reports] severe {f}."),
    ("affirmed", "Workup [shows] {f} on the right side."),
    ("affirmed", "He [presents with] acute {f} this morning."),
    ("affirmed", "History is [positive for] recurrent {f}."),
    ("affirmed", "Today the patient [complains of] {f} again."),
    ("negated", "On review she [denies] {f} or other complaints."),
    ("negated", "The scan showed [no] {f}."),
    ("negated", "He returns [without] {f} this week."),
    ("negated", "Workup was [negative for] {f}."),
    ("negated", "At discharge there was [no] {f}."),
    ("uncertain", "The report mentions [possible] {f}."),
    ("uncertain", "Clinically we [cannot rule out] {f} yet."),
    ("uncertain", "There is [concern for] early {f}."),
    ("uncertain", "Her symptoms [may represent] {f}."),
    ("uncertain", "Radiology [cannot exclude] {f} today."),
)

# Training only: what may come before a finding, and after it.
MODIFIERS = (
    "mild", "severe", "worsening", "new", "intermittent", "recurrent", "acute", "chronic",
    "persistent", "early", "sudden",
)  # fmt: skip
WHEN = (
    " since yesterday", " this morning", " for two days", " at night", " after exercise",
    " on the left side", " over the past week", " again", " today", " this week",
)  # fmt: skip

# Training only: the share of notes with 1 or 2 more assertion sentences of the same label.
MORE_ASSERTIONS = 0.25

# ---- findings (disjoint between the splits) ----

TRAIN_FINDINGS = (
    "chest pain", "shortness of breath", "fever", "cough", "nausea", "vomiting", "headache",
    "dizziness", "pneumonia", "abdominal pain", "back pain", "rash", "fatigue",
    "palpitations", "leg swelling", "wheezing", "chills", "diarrhea", "constipation",
    "sore throat", "weight loss", "night sweats", "syncope", "joint pain", "hematuria",
    "dysuria", "blurred vision", "numbness", "tremor", "jaundice", "anemia", "tachycardia",
    "pleural effusion", "rib fracture", "cellulitis", "urinary tract infection",
    "deep vein thrombosis", "seizure activity", "ear pain", "neck stiffness",
)  # fmt: skip

HELDOUT_FINDINGS = (
    "pulmonary embolism", "appendicitis", "myocardial infarction", "stroke", "sepsis",
    "pancreatitis", "meningitis", "kidney stones", "heart failure", "bowel obstruction",
    "pneumothorax", "cholecystitis", "delirium", "gastrointestinal bleeding", "hypoglycemia",
    "diverticulitis", "migraine", "bronchitis",
)  # fmt: skip

# ---- neutral sentences: no finding, and no cue about one ----
# Training: frames with slots, so that context words vary and a model learns to ignore them;
# some hold a cue word that asserts nothing about a finding ("She has no pets."), so that a
# cue word alone does not decide the label. Held-out: fixed sentences of other shapes, none of
# which the frames can produce.

NEUTRAL_FRAMES = (
    "{Doctor} will see {them} {day}.",
    "Follow up with {service} in {n} weeks.",
    "Blood pressure {sys}/{dia}, heart rate {hr}.",
    "{They} lives with {their} {relative} in {place}.",
    "{They} works as a {job}.",
    "{They} takes {drug} {dose} mg {freq}.",
    "Labs were drawn {time}.",
    "The patient is a {age}-year-old {person}.",
    "Weight is {kg} kg.",
    "Temperature {temp} C, oxygen saturation {sat}% on room air.",
    "The {relative} was updated by phone {time}.",
    "Plan discussed with {doctor}.",
    "{They} arrived by {transport} {time}.",
    "{They} enjoys {hobby} on weekends.",
    "Medications were reviewed with the {relative}.",
    "Return to clinic {day}.",
    "{They} was seen in the {unit} {time}.",
    "Consent was signed {time}.",
    "{They} speaks {language}.",
    "{They} was accompanied by {their} {relative}.",
    # Everyday sentences from broad word lists: arbitrary words must not matter.
    "{They} {verb} the {noun} {time}.",
    "The {noun} was {adjective} {time}.",
    "{Name} brought a {adjective} {noun}.",
    "{Their} {relative} {verb} a {noun} {day}.",
    "We talked about the {adjective} {noun}.",
    # Cue words that assert nothing about a finding: a cue alone must not decide the label.
    "{They} has no pets.",
    "No changes to {their} medications.",
    "{They} does not smoke.",
    "{They} may call the clinic {day}.",
    "Discharge is possible {day}.",
    "{They} came without {their} glasses.",
    "{They} reports sleeping well.",
    "{Doctor} is not available {day}.",
)
SLOTS: dict[str, tuple[str, ...]] = {
    "doctor": ("Dr. Lee", "Dr. Garcia", "Dr. Okafor", "Dr. Novak", "Dr. Chen", "Dr. Singh",
               "Dr. Rossi", "the attending", "the resident", "the team"),
    "day": ("tomorrow", "on Monday", "on Wednesday", "on Friday", "next week", "in the morning"),
    "service": ("cardiology", "primary care", "neurology", "orthopedics", "dermatology",
                "the surgical team", "physical therapy"),
    "relative": ("daughter", "son", "husband", "wife", "sister", "brother", "partner",
                 "niece", "grandson"),
    "place": ("Boston", "a small town", "an apartment downtown", "the suburbs", "a farmhouse"),
    "job": ("teacher", "carpenter", "bus driver", "chef", "librarian", "welder", "pharmacist"),
    "drug": ("metformin", "lisinopril", "atorvastatin", "omeprazole", "levothyroxine",
             "amlodipine", "sertraline"),
    "dose": ("5", "10", "20", "25", "40", "50", "100", "500"),
    "freq": ("daily", "twice daily", "b.i.d. with food", "at night", "with meals", "every morning"),
    "time": ("this morning", "at noon", "yesterday evening", "today", "at nine", "overnight"),
    "person": ("man", "woman", "retired engineer", "college student", "veteran"),
    "transport": ("car", "ambulance", "bus", "taxi", "wheelchair"),
    "hobby": ("gardening", "fishing", "reading", "chess", "hiking", "painting"),
    "unit": ("clinic", "emergency department", "urgent care center", "infusion suite"),
    "language": ("English", "Spanish", "Portuguese", "Mandarin", "English and French"),
}  # fmt: skip


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


EVERYDAY: dict[str, tuple[str, ...]] = {
    "noun": _words("""
        book car garden kitchen window letter phone radio coffee tea dinner breakfast lunch
        jacket umbrella bicycle ticket newspaper photo painting guitar piano table chair
        lamp blanket pillow basket bottle camera computer printer calendar map clock key
        wallet bag shoe hat scarf glove ring watch cup plate fork spoon bread apple orange
        cake pie soup sandwich garage porch fence roof door stairs hallway office library
        store market park beach river lake bridge train plane boat island village holiday
        birthday wedding concert movie game puzzle song poem story sweater"""),
    "verb": _words("""
        found painted cleaned bought sold fixed opened closed borrowed returned carried
        washed moved visited watched read wrote mailed packed unpacked ordered cooked baked
        planted checked folded sorted"""),
    "adjective": _words("""
        blue red green yellow old new small large quiet loud heavy light warm cold bright
        dark wooden plastic shiny dusty clean tidy broken borrowed favorite famous local
        strange simple lovely busy"""),
    "name": ("Anna", "Ben", "Carlos", "Dana", "Elif", "Farid", "Grace", "Hiro", "Ines",
             "Jonas", "Kemal", "Lucia", "Maya", "Nikolai", "Olga", "Priya"),
}  # fmt: skip
PRONOUNS = (("She", "her", "her"), ("He", "him", "his"))

HELDOUT_NEUTRAL = (
    "Her sister is visiting from Ohio.",
    "Appointment booked for next Tuesday.",
    "Pulse 80, respirations 16.",
    "He drinks two cups of coffee a day.",
    "Records were requested from the outside hospital.",
    "The nurse checked the IV site at noon.",
    "She is a retired accountant.",
    "Dr. Patel reviewed the chart.",
    "There were no visitors today.",
    "She may go home on Friday.",
)


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
    return Path(str(resources.files("gradlight.export").joinpath("data/assertion")))


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

"""The words the demo's clinical assertion notes are made of (``assertion_data`` generates the
notes from them): assertion templates with their cue phrases, findings, modifiers and time
phrases, and the neutral sentences and their frames. The held-out lists are never used in
training."""

from __future__ import annotations

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

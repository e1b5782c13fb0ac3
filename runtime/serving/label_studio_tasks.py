"""Label Studio predictions of one answer, the one definition for ``gradlight explain --format
label-studio`` (bulk/formats.py) and the Label Studio ML backend of ``gradlight serve``
(label_studio_predict.py), so both give the same regions for the same text.

A prediction's ``result`` holds regions (https://labelstud.io/guide/predictions):

- a ``choices`` region (control ``label``) with the predicted labels, scored with the
  probability of the top one;
- ``labels`` regions (control ``evidence``) on the words that are evidence for the predicted
  label, at code-point offsets of the text, each with its |score|. Scores are
  runtime/explanation/evidence.py's (the strongest word of the label at +-1); a word toward the
  label is graded ``strong`` (score >= 2/3), ``moderate`` (>= 1/3) or ``weak``, a word that
  pushes away from it is ``against``. Each grade is one ``Label`` of the config with the
  visualizer's colour for a score of its strength (client/palette.py);
- when asked, ``labels`` regions (control ``sentence``) on the sentences, graded the same way by
  their score for the predicted label divided by the largest |score| of the text's sentences;
- for a text with spans (entity focus), ``labels`` regions (control ``entity``) on the spans
  with their predicted label and its probability, and the evidence of each span's label.

``model_version`` names the predictions; ``labeling_config`` is the labeling config these regions
fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from gradlight.runtime.explanation.evidence import WORD, Evidence, Selection
from gradlight.v1 import gradlight_pb2 as pb

TEXT = "text"
CHOICES = "label"
EVIDENCE = "evidence"
SENTENCE = "sentence"
ENTITY = "entity"

STRONG, MODERATE, WEAK, AGAINST = "strong", "moderate", "weak", "against"
# Grade, the least strength it takes, and its colour: client/palette.py's shade of a score of
# +1, +0.6, +0.3 and -0.8 (tests/test_label_studio_backend.py compares).
GRADES: tuple[tuple[str, float, str], ...] = (
    (STRONG, 2 / 3, "#2166ac"),
    (MODERATE, 1 / 3, "#7aa3cd"),
    (WEAK, 0.0, "#bcd1e6"),
)
AGAINST_COLOUR = "#eb8134"
GRADE_NAMES = (*(name for name, _, _ in GRADES), AGAINST)

# What the backend selects, as ``gradlight explain --format label-studio`` does by default.
SELECTION = Selection(unit=WORD, top_k=10, min_score=0.1)


def grade(score: float) -> str:
    """The grade of an evidence score in [-1, 1]."""
    if score < 0:
        return AGAINST
    return next(name for name, least, _ in GRADES if score >= least)


def region(
    number: int, name: str, kind: str, value: dict[str, Any], score: float
) -> dict[str, Any]:
    return {
        "id": f"r{number}",
        "from_name": name,
        "to_name": TEXT,
        "type": kind,
        "value": value,
        "score": round(score, 4),
    }


def choices_region(number: int, chosen: Sequence[str], score: float) -> dict[str, Any]:
    return region(number, CHOICES, "choices", {"choices": list(chosen)}, score)


def span_region(
    number: int, name: str, text: str, start: int, end: int, label: str, score: float
) -> dict[str, Any]:
    value = {"start": start, "end": end, "text": text[start:end], "labels": [label]}
    return region(number, name, "labels", value, score)


def graded_regions(
    text: str, found: Iterable[Evidence], first: int, name: str = EVIDENCE
) -> list[dict[str, Any]]:
    """``labels`` regions numbered from ``first`` on ``found`` in text order, one per place
    (the strongest |score| where several answers found the same words)."""
    strongest: dict[tuple[int, int], float] = {}
    for e in found:
        key = (e.start, e.end)
        if e.score != 0 and abs(e.score) > abs(strongest.get(key, 0.0)):
            strongest[key] = e.score
    return [
        span_region(first + n, name, text, start, end, grade(score), abs(score))
        for n, ((start, end), score) in enumerate(sorted(strongest.items()))
    ]


def shown_label(result: pb.TextResult, found: Mapping[str, list[Evidence]]) -> str | None:
    """The label whose evidence is shown: the predicted one, else the first with evidence."""
    if result.predicted_label in found:
        return result.predicted_label
    return next(iter(found), None)


def sentence_evidence(result: pb.TextResult) -> list[Evidence]:
    """The sentences as evidence for the predicted label, scores divided by the largest."""
    if result.predicted_label not in result.labels:
        return []
    k = list(result.labels).index(result.predicted_label)
    scores = [float(s.scores[k]) for s in result.sentences]
    peak = max((abs(score) for score in scores), default=0.0)
    return [
        Evidence(s.start, s.end, score / peak)
        for s, score in zip(result.sentences, scores, strict=True)
        if peak > 0 and s.start < s.end
    ]


def model_version(name: str, revision: str, method: str, sentences: bool = False) -> str:
    """The ``model_version`` of predictions: ``MODEL@REVISION (METHOD[, sentences])``, the same
    for the live backend and the bulk job, so Label Studio tells models, artifacts, methods and
    region sets apart and never asks again for a task that has this version's prediction."""
    shown = f"{method}, sentences" if sentences else method
    return f"{name}@{revision} ({shown})" if revision else f"{name} ({shown})"


def _probability(result: pb.TextResult, label: str) -> float:
    probabilities = dict(zip(result.labels, result.probabilities, strict=True))
    return round(float(probabilities.get(label, 0.0)), 6)


def prediction(
    text: str,
    answers: Sequence[tuple[pb.TextResult, Mapping[str, list[Evidence]]]],
    version: str,
    spans: Sequence[tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """The prediction of a text from its answers, each a result with its evidence per label:
    the text's one answer (``spans`` None; its sentences shown when it has them), or one answer
    per span, in order."""
    regions: list[dict[str, Any]] = []
    if spans is None:
        result = answers[0][0]
        score = _probability(result, result.predicted_label)
        if result.predicted_labels:
            regions.append(choices_region(0, result.predicted_labels, score))
    else:
        scores = []
        for (start, end), (result, _) in zip(spans, answers, strict=True):
            p = _probability(result, result.predicted_label)
            scores.append(p)
            regions.append(
                span_region(len(regions), ENTITY, text, start, end, result.predicted_label, p)
            )
        score = min(scores, default=0.0)
    found: list[Evidence] = []
    for result, evidence_of in answers:
        if (label := shown_label(result, evidence_of)) is not None:
            found += evidence_of[label]
    regions += graded_regions(text, found, len(regions))
    if spans is None and answers[0][0].sentences:
        regions += graded_regions(text, sentence_evidence(answers[0][0]), len(regions), SENTENCE)
    return {"model_version": version, "score": score, "result": regions}


def labeling_config(labels: Sequence[str], multi_label: bool) -> str:
    """The Label Studio labeling config that the regions are made for, each control under a
    header that says what its regions are."""

    def values(tag: str) -> str:
        return "".join(f"\n    <{tag} value={quoteattr(label)}/>" for label in labels)

    graded = "".join(
        f'\n    <Label value="{name}" background="{colour}"/>'
        for name, colour in (*((n, c) for n, _, c in GRADES), (AGAINST, AGAINST_COLOUR))
    )
    choice = "multiple" if multi_label else "single"
    return (
        "<View>\n"
        f'  <Text name="{TEXT}" value="$text"/>\n'
        f'  <Choices name="{CHOICES}" toName="{TEXT}" choice="{choice}" showInline="true">'
        f"{values('Choice')}\n  </Choices>\n"
        '  <Header value="Words: evidence for the predicted label" size="6"/>\n'
        f'  <Labels name="{EVIDENCE}" toName="{TEXT}">{graded}\n  </Labels>\n'
        '  <Header value="Sentences: evidence for the predicted label" size="6"/>\n'
        f'  <Labels name="{SENTENCE}" toName="{TEXT}">{graded}\n  </Labels>\n'
        '  <Header value="Entities: the label predicted for each" size="6"/>\n'
        f'  <Labels name="{ENTITY}" toName="{TEXT}">{values("Label")}\n  </Labels>\n'
        "</View>\n"
    )

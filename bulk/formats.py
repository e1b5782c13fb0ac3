"""Output records of a bulk job, one per input line, in three formats.

- ``gradlight``: the line's prediction (label, probabilities), the attribution method and its
  evidence per label, plus sentences when asked, the completeness gaps of a path method with
  the steps (samples) it used and, for integrated gradients, whether a completeness tolerance
  was missed, the seed of a random one and the faithfulness figures when asked, and for a text
  read as windows its ``aggregation`` and ``windows`` (figures.py); for a line with spans, the
  same per span under ``entities``.
- ``prodigy``: a Prodigy task (https://prodi.gy/docs/api-interfaces): ``text``; ``spans``
  with ``start``, ``end``, ``label``, ``score`` and a ``color`` whose shade follows the score
  (the evidence words; for a line with spans, its spans labelled with their predicted label);
  ``html``, the text with the evidence highlighted, for the ``html`` interface or a
  ``blocks`` layout; ``options`` and ``accept`` (the predicted labels) for the ``choice``
  interface; and ``meta`` (the line, its id, the prediction, the method, its steps, whether a
  completeness tolerance was missed, its seed, and a text read as windows' ``aggregation`` and
  ``windows``, briefly).
- ``label-studio``: a Label Studio task (https://labelstud.io/guide/predictions):
  ``data.text`` and one prediction whose ``result`` holds the regions of
  runtime/serving/label_studio_tasks.py (as ``gradlight serve``'s Label Studio backend gives
  them): a ``choices`` region with the predicted labels, graded ``labels`` regions for the
  evidence words of the shown (predicted) label, sentences when asked and, for a line with
  spans, the spans (with their predicted label and probability); its ``model_version`` is
  the backend's (the model, its revision, the method); ``data`` also holds a
  path method's steps and whether a completeness tolerance was missed, and the task's
  ``meta`` a text read as windows' ``aggregation`` and ``windows``, briefly.
  ``label_studio_config`` gives the matching labeling config.

A text read as windows is answered whole: its evidence, sentences and spans index the whole
text, as every offset here does (code points of the line's ``text``).
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gradlight.bulk.evidence import WORD, Evidence, Selection, evidence, words
from gradlight.bulk.figures import path_figures, per_label, seed_of, windows_figures
from gradlight.bulk.lines import Item
from gradlight.client import palette
from gradlight.runtime.serving import label_studio_tasks as ls
from gradlight.v1 import gradlight_pb2 as pb

GRADLIGHT = "gradlight"
PRODIGY = "prodigy"
LABEL_STUDIO = "label-studio"
FORMATS = (GRADLIGHT, PRODIGY, LABEL_STUDIO)
PREDICTED = "predicted"  # in ``OutputOptions.labels``: the answer's predicted labels
# What ``gradlight explain`` selects per format unless told (--labels, --top-k, --min-score):
# the annotation formats the predicted labels' strongest evidence, as the Label Studio backend.
FORMAT_DEFAULTS: dict[str, dict[str, Any]] = {
    GRADLIGHT: {"labels": (), "top_k": None, "min_score": 0.0},
    PRODIGY: {"labels": (PREDICTED,), "top_k": 10, "min_score": 0.1},
    LABEL_STUDIO: {
        "labels": (PREDICTED,),
        "top_k": ls.SELECTION.top_k,
        "min_score": ls.SELECTION.min_score,
    },
}


@dataclass(frozen=True)
class OutputOptions:
    format: str = GRADLIGHT
    selection: Selection = field(default_factory=Selection)
    labels: tuple[str, ...] = ()  # evidence for these labels; () all; (PREDICTED,) predicted
    sentences: bool = False
    model: str = ""  # the model's name (in Label Studio's model_version, with the revision)
    revision: str = ""  # the artifact's (ModelInfo.revision)


def shade(score: float) -> str:
    """The visualizer's colour for a score (client/palette.py): white at 0, full blue (+1) or
    orange (-1), as ``#rrggbb``."""
    return palette.hex_colour(palette.shade(score))


def _ink(score: float) -> str:
    return "#fff" if palette.ink(score) == palette.WHITE else "#000"


@dataclass(frozen=True)
class _Answer:
    """One classification (a line's, or one span's) with its evidence per shown label."""

    result: pb.TextResult
    evidence: dict[str, list[Evidence]]

    @property
    def probabilities(self) -> dict[str, float]:
        return per_label(self.result, self.result.probabilities)


def _method(result: pb.TextResult, answers: Sequence[_Answer]) -> str:
    """The method of a line's token scores (of its first span's, for a line with spans)."""
    return answers[0].result.method if answers else result.method


def _answer(
    result: pb.TextResult,
    text: str,
    options: OutputOptions,
    text_words: Sequence[tuple[int, int]] | None,
) -> _Answer:
    found = evidence(result, text, options.selection, text_words) if result.tokens else {}
    if options.labels == (PREDICTED,):
        shown = list(result.predicted_labels) or [result.predicted_label]
    elif options.labels:
        shown = list(options.labels)
    else:
        shown = list(result.labels)
    return _Answer(result, {label: found[label] for label in shown if label in found})


def record(item: Item, result: pb.TextResult, options: OutputOptions) -> dict[str, Any]:
    """The output record of ``item`` from its answer."""
    text_words = words(item.text) if options.selection.unit == WORD else None
    if item.spans is None:
        answers = [_answer(result, item.text, options, text_words)]
    else:
        answers = [
            _answer(entity.result, item.text, options, text_words) for entity in result.entities
        ]
    if options.format == PRODIGY:
        return _prodigy(item, result, answers)
    if options.format == LABEL_STUDIO:
        return _label_studio(item, result, answers, options)
    return _gradlight(item, result, answers, options)


# ---- gradlight ----


def _evidence_json(text: str, found: Sequence[Evidence]) -> list[dict[str, Any]]:
    return [
        {"start": e.start, "end": e.end, "text": text[e.start : e.end], "score": round(e.score, 4)}
        for e in found
    ]


def _answer_json(text: str, answer: _Answer, options: OutputOptions) -> dict[str, Any]:
    result = answer.result
    data: dict[str, Any] = {
        "label": result.predicted_label,
        "labels": list(result.predicted_labels),
        "probabilities": answer.probabilities,
        "truncated": result.truncated,
        "method": result.method,
        "evidence": {label: _evidence_json(text, f) for label, f in answer.evidence.items()},
    }
    if result.completeness_gaps:
        data["completeness_gaps"] = per_label(result, result.completeness_gaps)
    data.update(path_figures([result]))
    if result.HasField("faithfulness"):
        found = result.faithfulness
        data["faithfulness"] = {
            "words": found.words,
            "fractions": [round(float(f), 6) for f in found.fractions],
            "comprehensiveness": per_label(result, found.comprehensiveness),
            "sufficiency": per_label(result, found.sufficiency),
            "random_comprehensiveness": per_label(result, found.random_comprehensiveness),
            "random_sufficiency": per_label(result, found.random_sufficiency),
        }
    if (seed := seed_of(result)) is not None:
        data["seed"] = seed
    if options.sentences:
        data["sentences"] = [
            {
                "start": s.start,
                "end": s.end,
                "text": s.sentence,
                "scores": {
                    label: round(float(v), 6)
                    for label, v in zip(result.labels, s.scores, strict=True)
                },
            }
            for s in result.sentences
        ]
    data.update(windows_figures(result))
    return data


def _gradlight(
    item: Item, result: pb.TextResult, answers: list[_Answer], options: OutputOptions
) -> dict[str, Any]:
    data: dict[str, Any] = {"line": item.number}
    if item.id is not None:
        data["id"] = item.id
    data["text"] = item.text
    if item.spans is None:
        data.update(_answer_json(item.text, answers[0], options))
        return data
    data["entities"] = [
        {
            "start": span.start,
            "end": span.end,
            "text": item.text[span.start : span.end],
            **({"span_label": span.label} if span.label is not None else {}),
            "context": [entity.context_start, entity.context_end],
            **_answer_json(item.text, answer, options),
        }
        for span, entity, answer in zip(item.spans, result.entities, answers, strict=True)
    ]
    return data


# ---- Prodigy ----


def _highlighted(
    text: str,
    window: tuple[int, int],
    found: list[Evidence],
    label: str,
    entity: tuple[int, int] | None = None,
) -> str:
    """``text`` in ``window`` as HTML: evidence marked in its shade, the entity underlined."""
    start, end = window
    inside = [e for e in found if start <= e.start and e.end <= end]
    cuts = {start, end} | {e.start for e in inside} | {e.end for e in inside}
    if entity is not None:
        cuts |= {min(max(entity[0], start), end), min(max(entity[1], start), end)}
    by_start = {e.start: e for e in inside}
    parts = []
    current: Evidence | None = None
    bounds = sorted(cuts)
    for a, b in itertools.pairwise(bounds):
        current = by_start.get(a, current if current is not None and a < current.end else None)
        piece = html.escape(text[a:b]).replace("\n", "<br>")
        if entity is not None and entity[0] <= a and b <= entity[1]:
            piece = f'<u style="text-decoration-thickness:2px">{piece}</u>'
        if current is not None:
            style = (
                f"background:{shade(current.score)};color:{_ink(current.score)};"
                "padding:0 2px;border-radius:3px"
            )
            title = html.escape(f"{label} {current.score:+.3f}", quote=True)
            piece = f'<mark style="{style}" title="{title}">{piece}</mark>'
        parts.append(piece)
    return "".join(parts)


def _answer_html(
    text: str,
    answer: _Answer,
    window: tuple[int, int],
    heading: str,
    entity: tuple[int, int] | None = None,
) -> str:
    result = answer.result
    probabilities = answer.probabilities
    blocks = [f"<p>{heading}</p>"] if heading else []
    for label, found in answer.evidence.items():
        p = probabilities.get(label)
        about = f" (p = {p:.3f})" if p is not None else ""
        blocks.append(
            f"<p><b>{html.escape(label)}</b>{html.escape(about)}</p>"
            f'<p style="line-height:1.9">{_highlighted(text, window, found, label, entity)}</p>'
        )
    if not answer.evidence:
        blocks.append(f"<p><b>{html.escape(result.predicted_label)}</b></p>")
    return "".join(blocks)


def _prodigy(item: Item, result: pb.TextResult, answers: list[_Answer]) -> dict[str, Any]:
    text = item.text
    first = answers[0].result if answers else None
    labels = list(first.labels) if first is not None else []
    meta: dict[str, Any] = {"line": item.number}
    if item.id is not None:
        meta["id"] = item.id
    task: dict[str, Any] = {"text": text}
    if item.spans is None:
        answer = answers[0]
        task["spans"] = [
            {
                "start": e.start,
                "end": e.end,
                "label": label,
                "score": round(e.score, 4),
                "color": shade(e.score),
            }
            for label, found in answer.evidence.items()
            for e in found
        ]
        task["html"] = (
            f'<div class="gradlight">{_answer_html(text, answer, (0, len(text)), "")}</div>'
        )
        task["accept"] = list(answer.result.predicted_labels)
        meta["label"] = answer.result.predicted_label
        meta["p"] = answer.probabilities.get(answer.result.predicted_label)
        meta.update(windows_figures(answer.result, brief=True))
    else:
        task["spans"] = []
        sections = []
        for span, entity, answer in zip(item.spans, result.entities, answers, strict=True):
            predicted = answer.result.predicted_label
            p = answer.probabilities.get(predicted, 0.0)
            task["spans"].append(
                {
                    "start": span.start,
                    "end": span.end,
                    "label": predicted,
                    "score": round(p, 4),
                    "color": shade(p),
                    **({"span_label": span.label} if span.label is not None else {}),
                }
            )
            heading = f"<i>{html.escape(text[span.start : span.end])}</i>"
            window = (entity.context_start, entity.context_end)
            entity_span = (span.start, span.end)
            sections.append(_answer_html(text, answer, window, heading, entity_span))
        task["html"] = f'<div class="gradlight">{"<hr>".join(sections)}</div>'
        task["accept"] = []
    task["options"] = [{"id": label, "text": label} for label in labels]
    meta["method"] = _method(result, answers)
    meta.update(path_figures([answer.result for answer in answers]))
    if answers and (seed := seed_of(answers[0].result)) is not None:
        meta["seed"] = seed
    task["meta"] = meta
    return task


# ---- Label Studio (runtime/serving/label_studio_tasks.py: the regions, as the server's) ----


def _label_studio(
    item: Item, result: pb.TextResult, answers: list[_Answer], options: OutputOptions
) -> dict[str, Any]:
    data: dict[str, Any] = {"text": item.text, "line": item.number}
    if item.id is not None:
        data["id"] = item.id
    data.update(path_figures([answer.result for answer in answers]))
    method = _method(result, answers)
    name = options.model or "gradlight"  # the version the live backend gives these options
    version = ls.model_version(name, options.revision, method, options.sentences)
    spans = None if item.spans is None else [(span.start, span.end) for span in item.spans]
    found = [(answer.result, answer.evidence) for answer in answers]
    task = {"data": data, "predictions": [ls.prediction(item.text, found, version, spans)]}
    if item.spans is None and (windows := windows_figures(answers[0].result, brief=True)):
        task["meta"] = windows
    return task


label_studio_config = ls.labeling_config  # the labeling config the tasks are made for

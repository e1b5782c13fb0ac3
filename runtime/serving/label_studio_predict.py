"""The predictions of a Label Studio ``/predict`` call (label_studio.py): its tasks read, sent
to the model in requests of at most the server's texts per request, and answered one
prediction per task, in order (label_studio_tasks.py).

A task is ``{"data": {"text": ..., "spans": [{"start", "end"}, ...]}}``; ``spans`` (code point
offsets, as ``gradlight explain`` takes them) asks for each span to be classified on its own
(entity focus), as do cnlpt's markers in the text (label_studio_markers.py).

One bad task does not sink the others: a task without a text, with bad spans or markers, or
that the model refuses (a text over the server's limit) is answered ``{"model_version",
"error": {"field": "tasks[2].data.text", "message"}}``, without ``result``, so Label Studio
stores the others' predictions and logs that one ("ML backend returns an incorrect prediction,
it should be a dict with the 'result' field: ..."). A refusal of the whole call (a method the
model does not serve, a full queue) is the call's error.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from gradlight.runtime.explanation.evidence import evidence
from gradlight.runtime.serving import label_studio_markers as markers
from gradlight.runtime.serving import label_studio_tasks as ls
from gradlight.runtime.serving.api import ATTRIBUTE, AttributorApi
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.wire.errors import RequestError
from gradlight.wire.methods import METHOD_LIST

MAX_TASKS = 4096  # per call: Label Studio sends every selected task in one call
MAX_SPANS = 64  # per task
_TASK_FIELD = re.compile(r"^(texts|entities)\[(\d+)\]")
# What a refusal of a whole request as too large names: its texts (their windows), entity spans,
# or the path rows its points make (wire/methods.py: a method's ``points`` field).
_SIZE_FIELDS = frozenset(
    {"texts", "entities", "method", *(m.points for m in METHOD_LIST if m.points)}
)


@dataclass(frozen=True)
class Task:
    index: int  # in the call
    text: str  # as the model reads it
    spans: tuple[tuple[int, int], ...] | None = None  # None: the text is classified whole
    shown: str = ""  # the task's text, when it marks its entities inline (label_studio_markers)
    inserted: markers.Inserted = ()


@dataclass(frozen=True)
class Asked:
    """What the backend's URL asks for: ``/label-studio/MODEL/METHOD,sentences``."""

    method: str
    sentences: bool = False


def read_tasks(tasks: Any) -> list[Task | RequestError]:
    """The tasks of a call, each read or the error that names what is wrong with it."""
    if not isinstance(tasks, list) or not tasks:
        raise RequestError("tasks", "must be a non-empty list of tasks")
    if len(tasks) > MAX_TASKS:
        raise RequestError(
            "tasks",
            f"has {len(tasks)} tasks; the limit is {MAX_TASKS} per call: select fewer tasks",
        )
    read: list[Task | RequestError] = []
    for index, task in enumerate(tasks):
        try:
            read.append(_task(index, task))
        except RequestError as exc:
            read.append(exc)
    return read


def _task(index: int, task: Any) -> Task:
    data = task.get("data") if isinstance(task, dict) else None
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise RequestError(
            f"tasks[{index}].data.text",
            "is missing or empty; the project's tasks need their text in data.text",
        )
    spans = data.get("spans")  # type: ignore[union-attr]
    if spans is None or spans == []:  # classified whole, as an empty list asks the server
        field = f"tasks[{index}].data.text"
        if (unmarked := markers.unmark(field, text)) is None:
            return Task(index, text)
        plain, marked, inserted = unmarked
        if len(marked) > MAX_SPANS:
            raise RequestError(field, f"marks {len(marked)} entities; at most {MAX_SPANS}")
        return Task(index, plain, marked, shown=text, inserted=inserted)
    field = f"tasks[{index}].data.spans"
    if not isinstance(spans, list) or len(spans) > MAX_SPANS:
        raise RequestError(field, f"must be a list of at most {MAX_SPANS} {{start, end}} objects")
    return Task(index, text, tuple(_span(f"{field}[{n}]", s, text) for n, s in enumerate(spans)))


def _span(field: str, span: Any, text: str) -> tuple[int, int]:
    start, end = (span.get("start"), span.get("end")) if isinstance(span, dict) else (None, None)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise RequestError(field, "needs integer start and end (code points)")
    if not 0 <= start < end <= len(text):  # type: ignore[operator]
        raise RequestError(
            field,
            f"[{start}, {end}) is not a span of the {len(text)}-character text: "
            "0 <= start < end <= its length",
        )
    return start, end  # type: ignore[return-value]


def _request(model: pb.ModelInfo, asked: Asked, tasks: Sequence[Task]) -> pb.AttributeRequest:
    message = pb.AttributeRequest(
        model=model.name,
        texts=[task.text for task in tasks],
        token_attributions=True,
        raw_scores=True,
        method=asked.method,
        sentence_attributions=asked.sentences,
    )
    if any(task.spans is not None for task in tasks):
        for task in tasks:
            spans = [pb.EntitySpan(start=a, end=b) for a, b in task.spans or ()]
            message.entities.append(pb.TextEntities(spans=spans))
    return message


def _about_task(exc: RequestError, task: Task) -> RequestError:
    """``exc`` of a request's ``texts[i]`` or ``entities[i]`` (``entities[i].spans[j]``), said
    of its task: its ``data.text`` (which marks the spans inline, if it does) or ``data.spans``."""
    named = _TASK_FIELD.match(exc.field)
    assert named is not None
    rest = exc.field[named.end() :]
    if named.group(1) == "texts" or task.shown:
        field = f"tasks[{task.index}].data.text"
    else:
        field = f"tasks[{task.index}].data" + (rest if rest.startswith(".spans") else ".spans")
    return RequestError(field, exc.description)


async def attribute_tasks(
    api: AttributorApi, model: pb.ModelInfo, asked: Asked, tasks: Sequence[Task]
) -> dict[int, pb.TextResult | RequestError]:
    """Each task's result, or the error that refuses it alone, by its index in the call. Tasks
    go in requests of the server's texts per request; a request refused as too large as a whole
    (its spans, or a path method's rows, over the server's limits) goes again as two halves,
    and the size that passes is kept for the rest; a task refused alone is answered so. Tasks
    with spans go in requests of their own, without sentences (their regions have none)."""
    found: dict[int, pb.TextResult | RequestError] = {}
    whole = [task for task in tasks if task.spans is None]
    spanned = [task for task in tasks if task.spans is not None]
    for group_asked, part in ((asked, whole), (replace(asked, sentences=False), spanned)):
        await _attribute_part(api, model, group_asked, part, found)
    return found


async def _attribute_part(
    api: AttributorApi,
    model: pb.ModelInfo,
    asked: Asked,
    tasks: Sequence[Task],
    found: dict[int, pb.TextResult | RequestError],
) -> None:
    pending, size = list(tasks), api.registry.max_texts
    while pending:
        group = pending[:size]
        message = _request(model, asked, group)
        try:
            answer = await api.counted(ATTRIBUTE, message, api.attribute(message))
        except RequestError as exc:
            named = _TASK_FIELD.match(exc.field)
            if named is not None and int(named.group(2)) < len(group):
                task = group[int(named.group(2))]  # refused alone: the others go again
                found[task.index] = _about_task(exc, task)
                pending.remove(task)
            elif exc.field not in _SIZE_FIELDS:
                raise
            elif size > 1:
                size = (min(size, len(group)) + 1) // 2
            else:  # one task, too large alone
                found[group[0].index] = RequestError(
                    f"tasks[{group[0].index}]", f"{exc.field}: {exc.description}"
                )
                pending.pop(0)
            continue
        found.update(
            (task.index, result) for task, result in zip(group, answer.results, strict=True)
        )
        del pending[: len(group)]


def predictions(
    read: Sequence[Task | RequestError],
    found: dict[int, pb.TextResult | RequestError],
    version: str,
) -> list[dict[str, Any]]:
    """One prediction per task, in order (an error without ``result`` for a refused one)."""
    answered = []
    for index, task in enumerate(read):
        outcome = task if isinstance(task, RequestError) else found[index]
        if isinstance(outcome, RequestError):
            error = {"field": outcome.field, "message": outcome.description}
            answered.append({"model_version": version, "error": error})
            continue
        assert isinstance(task, Task)
        answered.append(_prediction(task, outcome, version))
    return answered


def _prediction(task: Task, result: pb.TextResult, version: str) -> dict[str, Any]:
    results = [result] if task.spans is None else [e.result for e in result.entities]
    answers = [(r, evidence(r, task.text, ls.SELECTION) if r.tokens else {}) for r in results]
    found = ls.prediction(task.text, answers, version, task.spans)
    return markers.remark(found, task.shown, task.inserted) if task.shown else found


async def predict(
    api: AttributorApi, model: pb.ModelInfo, asked: Asked, tasks: Any
) -> list[dict[str, Any]]:
    """The predictions of a call's ``tasks``."""
    read = await asyncio.to_thread(read_tasks, tasks)
    good = [task for task in read if isinstance(task, Task)]
    found = await attribute_tasks(api, model, asked, good) if good else {}
    version = ls.model_version(model.name, model.revision, asked.method, asked.sentences)
    return await asyncio.to_thread(predictions, read, found, version)

"""A bulk job: input lines in, one output record per explained line, in input order; bad
lines reported (stderr and ``OUTPUT.errors.jsonl``) without stopping; progress shown; an
interrupted job resumed from its checkpoint (checkpoint.py)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from gradlight.bulk import checkpoint, label_studio_files
from gradlight.bulk.backends import ModelFacts
from gradlight.bulk.checkpoint import CheckpointError, Progress
from gradlight.bulk.explaining import (
    ROWS_PER_LINE,
    ROWS_PER_REQUEST,
    SPECIAL_TOKENS,
    TOKENS_PER_SENTENCE,
    RequestOptions,
    tokens_estimate,
    units,
)
from gradlight.bulk.formats import LABEL_STUDIO, PREDICTED, OutputOptions
from gradlight.bulk.lines import BadLine, Item, parse_line
from gradlight.bulk.pipeline import Pipeline
from gradlight.bulk.writer import Chunk, ProgressBar, Writer, open_at
from gradlight.runtime.explanation.entities import marking_from
from gradlight.wire.errors import GradlightError, RequestError
from gradlight.wire.methods import FIELDS, FIELDS_BY_NAME, resolve


@dataclass(frozen=True)
class JobOptions:
    request: RequestOptions
    output: OutputOptions
    model: str = ""  # empty: the only one served
    lines_per_request: int = 32
    commit_interval_s: float = 1.0
    restart: bool = False
    progress: bool = True


@dataclass
class Summary:
    lines: int
    explained: int
    bad: int
    seconds: float
    texts_per_s: float
    resumed_from: int
    already_complete: bool = False
    seed: int | None = None  # the job's seed, when its answers depend on one


@dataclass(frozen=True)
class LineCost:
    """About how many graph rows a line asks for: ``rows_per_unit`` per classification (its
    text, or each of its spans), and for a text read as windows (``window`` text tokens a
    window, one every ``stride``; ``window`` 0: texts are truncated) that many per window,
    plus with ``sentences`` one window per sentence and window (each sentence's variant is
    the whole text again, read as windows)."""

    rows_per_unit: int
    window: int = 0
    stride: int = 1
    sentences: bool = False

    def __call__(self, item: Item) -> int:
        tokens = tokens_estimate(item.text) if self.window and item.spans is None else 0
        if tokens <= self.window:  # a span is read in one window, centred on it
            return units(item) * self.rows_per_unit
        windows = 1 + -(-(tokens - self.window) // self.stride)
        sentences = tokens // TOKENS_PER_SENTENCE if self.sentences else 0
        return windows * (self.rows_per_unit + sentences)


def _chunks(
    handle: BinaryIO,
    offset: int,
    first_line: int,
    max_lines: int,
    max_units: int,
    max_line_units: int | None = None,
    cost: LineCost = LineCost(1),
) -> Iterator[Chunk]:
    """Groups of at most ``max_lines`` lines, ``max_units`` classifications and about
    ``ROWS_PER_REQUEST`` graph rows (``cost``; a line over either goes alone); a line of over
    ``max_line_units`` (default ``max_units``) classifications is bad."""
    max_line_units = max_units if max_line_units is None else max_line_units
    handle.seek(offset)
    number = first_line
    chunk = Chunk([], b"", offset)
    parts: list[bytes] = []
    weight = rows = 0
    for raw in handle:
        number += 1
        entry = parse_line(number, raw.rstrip(b"\r\n"))
        if isinstance(entry, Item) and units(entry) > max_line_units:
            entry = BadLine(
                number,
                f"spans: has {units(entry)} spans; at most {max_line_units} per line can be "
                "classified in one request here: split the line",
            )
        line_units, line_rows = (units(entry), cost(entry)) if isinstance(entry, Item) else (0, 0)
        if chunk.entries and (
            len(chunk.entries) >= max_lines
            or weight + line_units > max_units
            or rows + line_rows > ROWS_PER_REQUEST
        ):
            chunk.raw = b"".join(parts)
            yield chunk
            chunk, parts, weight, rows = Chunk([], b"", chunk.end_offset), [], 0, 0
        chunk.entries.append((number, entry))
        parts.append(raw)
        chunk.end_offset += len(raw)
        weight += line_units
        rows += line_rows
    if chunk.entries:
        chunk.raw = b"".join(parts)
        yield chunk


def _count_lines(path: Path) -> int:
    count = 0
    last = b"\n"
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


# The request's fields that a checkpoint records only when set (a job started before they
# existed still resumes): the method fields, and the long-text ones with their unset values.
_LONG_TEXT_FIELDS = {"long_texts": "", "window_stride": 0, "aggregation": ""}


def _request_settings(request: RequestOptions) -> dict[str, Any]:
    """The request's options, those above left out when unset."""
    recorded = json.loads(json.dumps(asdict(request)))
    unset = {field.name: field.unset for field in FIELDS} | _LONG_TEXT_FIELDS
    for name, value in unset.items():
        if recorded[name] == value:
            del recorded[name]
    return recorded


def _settings(options: JobOptions, input_path: Path, facts: ModelFacts) -> dict[str, Any]:
    """What must not change between an interrupted run and its resumption."""
    return {
        "input": str(input_path.resolve()),
        "request": _request_settings(options.request),
        "output": json.loads(json.dumps(asdict(options.output))),
        "model": facts.identity,
        "model_labels": list(facts.labels),
    }


def with_job_seed(options: JobOptions, output_path: Path) -> JobOptions:
    """``options`` with the job's one seed, when its answers depend on one (gradient_shap,
    faithfulness' random ranking) and none was given: the seed that ``output_path``'s
    checkpoint records, so that a resumed job answers as it began (unless ``restart``), or a
    new one. Every request of the job sends it, and the checkpoint records it."""
    request = options.request
    if not request.random or request.seed is not None:
        return options
    seed = None if options.restart else _recorded_seed(checkpoint.paths(output_path)[1])
    if seed is None:
        seed = secrets.randbits(53)  # exact as a JSON number in JavaScript (Prodigy, Label Studio)
    return replace(options, request=replace(request, seed=seed))


def _recorded_seed(checkpoint_path: Path) -> int | None:
    try:
        data = json.loads(checkpoint_path.read_text(encoding="utf-8"))
        seed = data["settings"]["request"].get("seed")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # none yet; an unreadable one is reported when the job loads it
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def run_job(
    input_path: Path,
    output_path: Path,
    pipeline: Pipeline,
    options: JobOptions,
    stop_requested: Callable[[], bool] = lambda: False,
) -> Summary:
    """Explain ``input_path`` into ``output_path``; raises CheckpointError when the output
    cannot be (re)started as asked. When ``stop_requested()`` turns true the job stops after
    the chunk being written, saves what is done and raises KeyboardInterrupt (run again to
    resume); a KeyboardInterrupt from elsewhere is let through after the same save. A job whose
    answers depend on a seed needs one in ``options.request``, the one its ``pipeline`` sends
    (``with_job_seed``)."""
    if options.request.random and options.request.seed is None:
        raise ValueError("the job's answers depend on a seed: give one (with_job_seed)")
    errors_path, checkpoint_path = checkpoint.paths(output_path)
    facts = pipeline.start(options.model)
    _check_request(options, facts)
    if options.restart:  # only once the model is there and the options are good
        tasks_path = label_studio_files.tasks_path(output_path)
        for path in (output_path, errors_path, checkpoint_path, tasks_path):
            path.unlink(missing_ok=True)
    output = replace(options.output, model=facts.name, revision=facts.revision)
    settings = _settings(options, input_path, facts)
    progress = _starting_point(output_path, checkpoint_path, settings)
    started_at = time.perf_counter()
    if output.format == LABEL_STUDIO:
        label_studio_files.write_config(output_path, facts.labels, facts.multi_label)
    with input_path.open("rb") as source:
        digest = _verified_prefix(source, input_path, progress)
        bar = ProgressBar(options.progress, _count_lines(input_path), progress.lines)
        with (
            open_at(output_path, progress.output_bytes) as out,
            open_at(errors_path, progress.errors_bytes) as errors,
        ):
            writer = Writer(out, errors, checkpoint_path, settings, progress, digest)
            chunks = _chunks(
                source, progress.input_offset, progress.lines, options.lines_per_request,
                *unit_limits(options.request, facts), line_cost(options.request, facts),
            )  # fmt: skip
            done = writer.run(chunks, pipeline, output, bar, options, stop_requested)
    if output.format == LABEL_STUDIO:
        label_studio_files.write_tasks(output_path)
    seconds = time.perf_counter() - started_at
    lines = done.lines - progress.lines
    return Summary(
        done.lines,
        done.explained,
        done.bad,
        seconds,
        lines / seconds if seconds > 0 else 0.0,
        progress.lines,
        already_complete=progress.complete and lines == 0,
        seed=options.request.seed if options.request.random else None,
    )


def unit_limits(request: RequestOptions, facts: ModelFacts) -> tuple[int, int]:
    """Classifications (texts, spans) per request, and per line: the backend's limit, fewer
    when each costs many graph rows (a path method, faithfulness): a group of lines asks for
    ``ROWS_PER_REQUEST`` rows at most, a line alone for ``ROWS_PER_LINE`` (a server's default
    queue; a line over it is bad, not a request that every server would refuse)."""
    rows = request.rows_per_unit(len(facts.labels))
    if rows == 1:
        return facts.max_texts, facts.max_texts
    return (
        max(1, min(facts.max_texts, ROWS_PER_REQUEST // rows)),
        max(1, min(facts.max_texts, ROWS_PER_LINE // rows)),
    )


def line_cost(request: RequestOptions, facts: ModelFacts) -> LineCost:
    """What a line costs with ``request``: its texts read as windows where it says so, or
    where it leaves that to a backend that may (a server's default is not known)."""
    rows = request.rows_per_unit(len(facts.labels))
    long_texts = request.long_texts or facts.long_texts
    if long_texts == "truncate":
        return LineCost(rows)
    window = max(1, (request.max_length or facts.max_length) - SPECIAL_TOKENS)
    stride = request.window_stride or max(1, window // 2)
    return LineCost(rows, window, stride, request.sentences)


def _starting_point(output_path: Path, checkpoint_path: Path, settings: dict[str, Any]) -> Progress:
    """Where the job starts: its checkpoint's progress (checked against ``settings``), or the
    beginning of an output that does not exist yet."""
    if checkpoint_path.exists():
        return checkpoint.load(checkpoint_path, settings)
    if output_path.exists() and output_path.stat().st_size > 0:
        raise CheckpointError(
            f"{output_path} exists and has no checkpoint of an interrupted run; pass --restart "
            "to overwrite it, or choose another output"
        )
    return Progress()


def _verified_prefix(source: BinaryIO, input_path: Path, progress: Progress) -> Any:
    """The sha256 of the input bytes already done, checked against the checkpoint's."""
    digest = checkpoint.hash_prefix(source, progress.input_offset)
    if digest.hexdigest() != progress.input_sha256:
        raise CheckpointError(
            f"the first {progress.input_offset} bytes of {input_path} differ from the input "
            "this output was started from; pass --restart to start over"
        )
    if progress.complete and progress.input_offset > 0:  # lines added since: go on
        source.seek(progress.input_offset - 1)
        if source.read(1) != b"\n" and source.read(1):
            raise CheckpointError(
                f"{input_path}'s last line, finished without a line break, has grown "
                "since; pass --restart to start over"
            )
    return digest


class JobOptionsError(GradlightError, ValueError):
    """The job's options are refused for this model (its labels, its maximum length): every
    request would be; said in the command's flag names."""


def _check_request(options: JobOptions, facts: ModelFacts) -> None:
    """Refuse at the start what every request would be refused for (not line by line)."""
    labels = options.output.labels
    if len(set(labels)) != len(labels):
        raise JobOptionsError(f"--labels names a label twice: {', '.join(labels)}")
    unknown = [label for label in labels if label not in (*facts.labels, PREDICTED)]
    if unknown:
        raise JobOptionsError(
            f"--labels: {', '.join(map(repr, unknown))} not among the model's labels "
            f"({', '.join(facts.labels)})"
        )
    request = options.request
    if not 0 <= request.max_length <= facts.max_length:
        raise JobOptionsError(
            f"--max-length is {request.max_length}; use 0 (the model's) to {facts.max_length}"
        )
    window = (request.max_length or facts.max_length) - SPECIAL_TOKENS
    if request.window_stride > window:
        raise JobOptionsError(
            f"--window-stride is {request.window_stride}; a window of "
            f"{request.max_length or facts.max_length} tokens holds at most {window} text "
            "tokens: use at most that (0: half a window)"
        )
    open_marker, close_marker = request.markers or (None, None)
    try:
        marking_from(open_marker, close_marker, request.context_chars)
    except RequestError as exc:  # said of the command's flags
        flag = "--context-chars" if exc.field.endswith("context_chars") else "--markers"
        raise JobOptionsError(f"{flag}: {str(exc).split(': ', 1)[1]}") from None
    try:  # the job always asks token scores; the model refuses a method it lacks
        resolve(request.method_values)
    except RequestError as exc:  # each field is the flag of the same name
        raise JobOptionsError(f"{FIELDS_BY_NAME[exc.field].flag}: {exc.description}") from None

"""One request per group of lines, with the rules that keep a bulk job going: a line the
model refuses is retried alone and reported as a bad line; a busy or unreachable server is
retried with backoff, then the job stops (and resumes later). The rules read the error's code,
retry delay and field (``decide``), never its message."""

from __future__ import annotations

import asyncio
import enum
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from gradlight.bulk.backends import BackendError
from gradlight.bulk.lines import BadLine, Item
from gradlight.client.client import entity_fields, method_fields
from gradlight.runtime.explanation.faithfulness import FRACTIONS
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.wire.error_details import ErrorDetails
from gradlight.wire.errors import RequestError
from gradlight.wire.methods import FIELD_NAMES, FIELDS_BY_NAME, resolve, with_fields

TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        # A replica that stops answers CANCELLED to a call that reached it at that instant
        # (grpc/grpc#41785, runtime/serving/server.py) or outlived its grace period; the job itself
        # never cancels a call (it stops between requests), so the call is retried.
        grpc.StatusCode.CANCELLED,
    }
)
# Refusals that may be about one line of a group: the group is retried line by line.
PER_LINE = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,  # when its field is a line's (below)
        grpc.StatusCode.INTERNAL,  # inference failed on some row
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # when no retry can help: the answer is too large
    }
)
# The request fields that belong to one line: its text, its spans (or their count); and
# ``texts`` itself, refused for the request's size (too many texts, or windows of long texts,
# for this server): each line alone fits, or is a bad line.
_LINE_FIELD = re.compile(r"^(?:texts(?:\[\d+\])?|entities(?:\[\d+\])?)(?:\.|$)")


class Decision(enum.Enum):
    RETRY = "retry"  # the same request again, after a backoff
    PER_LINE = "per line"  # each line of the group alone
    BAD_LINE = "bad line"  # this (single) line is reported bad; the job goes on
    STOP = "stop"  # nothing a line caused: the job stops (and resumes later)


def decide(error: ErrorDetails, lines: int) -> Decision:
    """What a refused request of ``lines`` lines leads to, from its code, its retry delay and
    its field (never from its message)."""
    if error.code in TRANSIENT or (
        error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.retryable
    ):
        return Decision.RETRY
    if error.code not in PER_LINE:
        return Decision.STOP
    if error.code == grpc.StatusCode.INVALID_ARGUMENT and not _LINE_FIELD.match(error.field or ""):
        return Decision.STOP  # about the options, not a line: every line would fail alike
    return Decision.PER_LINE if lines > 1 else Decision.BAD_LINE


def line_reason(error: ErrorDetails) -> str:
    """Why a line is bad, said of the line: ``texts[0]`` is its text, ``entities[0]`` its
    spans."""
    field = error.field or ""
    said = re.sub(r"^entities\[\d+\]\.", "", re.sub(r"^texts(\[\d+\])?", "text", field))
    said = "spans" if said.startswith("entities") else said
    if said and error.description:
        return f"{said}: {error.description}"
    return error.message


class Backend(Protocol):
    async def attribute(self, request: pb.AttributeRequest) -> pb.AttributeResponse: ...


# Graph rows a request of a path method, of faithfulness or of long texts read as windows may
# ask for (the lines of a request are cut to fit, job.py: ``LineCost``): the pipeline's 4
# requests in flight then fit in a server's default queue of 2048 rows (runtime/settings.py:
# BatchSettings.max_queue_size), and each still fills batches; its windows stay under a
# server's default limit of 1024 a request (DocumentSettings.max_windows_per_request). One
# line's spans go alone in a request of up to that whole queue; a longer text alone in its own.
ROWS_PER_REQUEST = 512
ROWS_PER_LINE = 2048
# A text's tokens, estimated without its tokenizer (the job loads none) to count the windows
# of a text read as windows: from its UTF-8 bytes, about 4 to 6 a token in English text, 3 in
# CJK scripts, so 3 errs toward more windows (smaller requests). A sentence: about 20 tokens.
BYTES_PER_TOKEN = 3
TOKENS_PER_SENTENCE = 20
SPECIAL_TOKENS = 2  # around each window's text: [CLS] and [SEP], <s> and </s>


@dataclass(frozen=True)
class _JobRequest:
    sentences: bool = False
    max_length: int = 0
    markers: tuple[str, str] | None = None
    context_chars: int | None = None
    # Texts longer than the window (the proto's fields; "", 0, "": the server's defaults).
    long_texts: str = ""
    window_stride: int = 0
    aggregation: str = ""

    @property
    def method_values(self) -> dict[str, Any]:
        """The method and faithfulness fields, by name."""
        return {name: getattr(self, name) for name in FIELD_NAMES}

    @property
    def random(self) -> bool:
        """Whether the answers depend on a seed (whether the request reads one)."""
        return FIELDS_BY_NAME["seed"].read_by(self.method, self.faithfulness)  # type: ignore[attr-defined]

    def rows_per_unit(self, labels: int) -> int:
        """At most how many graph rows one classification (a text, or a span) costs: the path
        graph's per label and point (with a completeness tolerance, the most steps' points)
        plus one at the baseline, and faithfulness' variants (at most 2 per fraction for each
        label and the random ranking); 1 otherwise."""
        values = self.method_values
        try:
            points = resolve(values).points
        except RequestError:  # refused before any request (job.py: _check_request)
            points = 0
        rows = labels * points + 1 if points else 1
        if values["faithfulness"]:
            rows += 2 * len(FRACTIONS) * (labels + 1)
        return rows


RequestOptions = with_fields("RequestOptions", __name__, _JobRequest)
"""What every request of a job asks. Every label is always attributed: the records need every
probability, and the evidence shown is chosen afterwards (formats.py). The method fields are
gradlight.wire.methods' ``FIELDS``, as the AttributeRequest has them (unset: the server's
default); a job whose method draws random numbers (gradient_shap, faithfulness' random ranking)
gets one ``seed`` for all its requests (job.py: ``with_job_seed``)."""


def build_request(items: Sequence[Item], options: RequestOptions) -> pb.AttributeRequest:
    entities = None
    if any(item.spans is not None for item in items):
        entities = [[(s.start, s.end) for s in item.spans or ()] for item in items]
    return pb.AttributeRequest(
        texts=[item.text for item in items],
        max_length=options.max_length,
        long_texts=options.long_texts,
        window_stride=options.window_stride,
        aggregation=options.aggregation,
        token_attributions=True,
        sentence_attributions=options.sentences,
        raw_scores=True,
        **entity_fields(entities, options.markers, options.context_chars),  # type: ignore[arg-type]
        **method_fields(**options.method_values),  # type: ignore[arg-type]
    )


def units(item: Item) -> int:
    """The classifications a line asks for (its spans, or the text)."""
    return len(item.spans) if item.spans is not None else 1


def tokens_estimate(text: str) -> int:
    """About how many tokens ``text`` has, erring toward more (``BYTES_PER_TOKEN``)."""
    return -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN)


async def explain_items(
    backend: Backend,
    items: Sequence[Item],
    options: RequestOptions,
    *,
    retries: int = 8,
    backoff_s: float = 0.5,
) -> list[pb.TextResult | BadLine]:
    """Per item, its answer or why it is a bad line (in order). Raises BackendError for what
    no line caused: a server that stays busy or unreachable, a wrong model or token."""
    if not items:
        return []
    request = build_request(items, options)
    for attempt in range(retries + 1):
        try:
            response = await backend.attribute(request)
        except BackendError as exc:
            decision = decide(exc.details, len(items))
            if decision is Decision.RETRY and attempt < retries:
                wait = min(backoff_s * 2**attempt, 10.0) * random.uniform(0.5, 1.0)
                await asyncio.sleep(max(wait, exc.details.retry_after_s or 0.0))
                continue
            if decision is Decision.BAD_LINE:
                return [BadLine(items[0].number, line_reason(exc.details))]
            if decision is not Decision.PER_LINE:
                raise
            alone = await asyncio.gather(
                *(explain_items(backend, [item], options, retries=retries) for item in items)
            )
            return [outcome for (outcome,) in alone]
        if len(response.results) != len(items):
            raise BackendError.of(
                grpc.StatusCode.INTERNAL,
                f"{len(response.results)} results came back for {len(items)} texts",
            )
        return list(response.results)
    raise AssertionError("unreachable")

"""One request per group of lines, with the rules that keep a bulk job going: a line the
model refuses is retried alone and reported as a bad line; a busy or unreachable server is
retried with backoff, then the job stops (and resumes later)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from gradlight.bulk.backends import BackendError
from gradlight.bulk.lines import BadLine, Item
from gradlight.client.client import entity_fields
from gradlight.v1 import gradlight_pb2 as pb

RETRIED = frozenset(
    {
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        # A replica that stops answers CANCELLED to a call that reached it at that instant
        # (grpc/grpc#41785, runtime/server.py) or outlived its grace period; the job itself
        # never cancels a call (it stops between requests), so the call is retried.
        grpc.StatusCode.CANCELLED,
    }
)
# A request failing with these is retried line by line: the line alone failing is bad.
PER_LINE = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL})
# INVALID_ARGUMENT about a line names its own fields; about anything else, the whole job.
_LINE_FIELDS = re.compile(r"^(texts\[0\]|entities(\[0\])?)[.: ]")
# RESOURCE_EXHAUSTED that waiting cannot help: the answer is over the send limit.
_TOO_LARGE = "over this server's limit"


class Backend(Protocol):
    async def attribute(self, request: pb.AttributeRequest) -> pb.AttributeResponse: ...


@dataclass(frozen=True)
class RequestOptions:
    """What every request of a job asks. Every label is always attributed: the records need
    every probability, and the evidence shown is chosen afterwards (formats.py)."""

    sentences: bool = False
    max_length: int = 0
    markers: tuple[str, str] | None = None
    context_chars: int | None = None


def build_request(items: Sequence[Item], options: RequestOptions) -> pb.AttributeRequest:
    entities = None
    if any(item.spans is not None for item in items):
        entities = [[(s.start, s.end) for s in item.spans or ()] for item in items]
    return pb.AttributeRequest(
        texts=[item.text for item in items],
        max_length=options.max_length,
        token_attributions=True,
        sentence_attributions=options.sentences,
        raw_scores=True,
        **entity_fields(entities, options.markers, options.context_chars),  # type: ignore[arg-type]
    )


def units(item: Item) -> int:
    """The classifications a line asks for (its spans, or the text)."""
    return len(item.spans) if item.spans is not None else 1


def _line_reason(message: str) -> str:
    """A message about request field ``texts[0]``/``entities[0]`` said of the line."""
    message = re.sub(r"^entities\[0\]\.", "", message)
    return re.sub(r"^texts\[0\]", "text", message)


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
            too_large = exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED and _TOO_LARGE in exc.message
            if exc.code in RETRIED and attempt < retries and not too_large:
                await asyncio.sleep(min(backoff_s * 2**attempt, 10.0))
                continue
            if exc.code not in PER_LINE and not too_large:
                raise
            if len(items) == 1:
                if exc.code == grpc.StatusCode.INVALID_ARGUMENT and not _LINE_FIELDS.match(
                    exc.message
                ):
                    raise  # about the options, not the line: every line would fail alike
                return [BadLine(items[0].number, _line_reason(exc.message))]
            alone = await asyncio.gather(
                *(explain_items(backend, [item], options, retries=retries) for item in items)
            )
            return [outcome for (outcome,) in alone]
        if len(response.results) != len(items):
            raise BackendError(
                grpc.StatusCode.INTERNAL,
                f"{len(response.results)} results came back for {len(items)} texts",
            )
        return list(response.results)
    raise AssertionError("unreachable")

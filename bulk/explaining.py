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
from gradlight.v1 import gradlight_pb2 as pb

RETRIED = frozenset(
    {
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
# A request failing with these is retried line by line: the line alone failing is bad.
PER_LINE = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL})


class Backend(Protocol):
    async def attribute(self, request: pb.AttributeRequest) -> pb.AttributeResponse: ...


@dataclass(frozen=True)
class RequestOptions:
    sentences: bool = False
    labels: tuple[str, ...] = ()  # attributed labels; () = all
    max_length: int = 0
    markers: tuple[str, str] | None = None
    context_chars: int | None = None


def build_request(items: Sequence[Item], options: RequestOptions) -> pb.AttributeRequest:
    request = pb.AttributeRequest(
        texts=[item.text for item in items],
        max_length=options.max_length,
        token_attributions=True,
        sentence_attributions=options.sentences,
        labels=list(options.labels),
        raw_scores=True,
    )
    if any(item.spans is not None for item in items):
        for item in items:
            spans = [pb.EntitySpan(start=s.start, end=s.end) for s in item.spans or ()]
            request.entities.add(spans=spans)
    if options.markers is not None:
        request.entity_marking.open, request.entity_marking.close = options.markers
    if options.context_chars is not None:
        request.entity_marking.context_chars = options.context_chars
    return request


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
            return list(response.results)
        except BackendError as exc:
            if exc.code in RETRIED and attempt < retries:
                await asyncio.sleep(min(backoff_s * 2**attempt, 10.0))
                continue
            if exc.code not in PER_LINE:
                raise
            if len(items) == 1:
                return [BadLine(items[0].number, _line_reason(exc.message))]
            alone = await asyncio.gather(
                *(explain_items(backend, [item], options, retries=retries) for item in items)
            )
            return [outcome for (outcome,) in alone]
    raise AssertionError("unreachable")

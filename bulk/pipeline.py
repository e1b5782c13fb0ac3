"""Runs groups of lines through a backend with a few requests in flight, answers in order."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from gradlight.bulk.backends import ModelFacts
from gradlight.bulk.explaining import Backend, RequestOptions, explain_items
from gradlight.bulk.lines import BadLine, Item
from gradlight.v1 import gradlight_pb2 as pb

Outcome = pb.TextResult | BadLine


class StartableBackend(Backend, Protocol):
    async def start(self, model: str = "") -> ModelFacts: ...

    async def close(self) -> None: ...


class Pipeline(Protocol):
    def start(self, model: str) -> ModelFacts: ...

    def outcomes(self, groups: Iterable[Sequence[Item]]) -> Iterator[list[Outcome]]: ...

    def close(self) -> None: ...


class AsyncPipeline:
    """``window`` groups are requested at once (the dynamic batcher, local or remote, packs
    them together); answers come back in group order."""

    def __init__(self, backend: StartableBackend, options: RequestOptions, window: int = 4) -> None:
        self.backend = backend
        self.options = options
        self.window = window
        self._loop = asyncio.new_event_loop()

    def start(self, model: str) -> ModelFacts:
        return self._loop.run_until_complete(self.backend.start(model))

    def outcomes(self, groups: Iterable[Sequence[Item]]) -> Iterator[list[Outcome]]:
        pending: deque[asyncio.Task[list[Outcome]]] = deque()
        try:
            for items in groups:
                pending.append(
                    self._loop.create_task(explain_items(self.backend, items, self.options))
                )
                if len(pending) >= self.window:
                    yield self._loop.run_until_complete(pending.popleft())
            while pending:
                yield self._loop.run_until_complete(pending.popleft())
        finally:
            for task in pending:
                task.cancel()
            if pending and not self._loop.is_running():
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self.backend.close())
            leftover = asyncio.all_tasks(self._loop)
            for task in leftover:
                task.cancel()
            if leftover:
                self._loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        finally:
            self._loop.close()

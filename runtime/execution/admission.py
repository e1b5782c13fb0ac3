"""Room in a model's queue, held by each request from before its texts are tokenized until its
rows are queued.

A request is admitted with one row per text (so a burst is refused at the door, before any
tokenizing), grows its hold to its real row count once planned (texts, sentence variants and
label rows), then hands the rows to the queue without another check: a request is admitted
whole or refused whole, and never by its own rows. A request is admitted whole into an empty
queue whatever its size; otherwise the rows waiting (queued or held) plus its own may not
exceed the limit.
"""

from __future__ import annotations

import asyncio

from gradlight.runtime.errors import QueueFullError


class QueueRoom:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queued = 0  # rows in the batcher's queue
        self.held = 0  # rows held by admitted requests not yet queued

    @property
    def waiting(self) -> int:
        return self.queued + self.held

    def admit(self, rows: int) -> Admission:
        self._check(rows, own=0)
        self.held += rows
        return Admission(self, rows)

    def dequeued(self, rows: int) -> None:
        """``rows`` left the queue (taken into a batch, or dropped)."""
        self.queued -= rows

    def _check(self, rows: int, own: int) -> None:
        """May a request holding ``own`` rows hold ``rows`` in all?"""
        others = self.waiting - own
        if others and others + rows > self.limit:
            raise QueueFullError(
                f"the queue for this model is full ({others} rows waiting, limit {self.limit}, "
                f"this request needs {rows}); retry with backoff"
            )


class Admission:
    """One request's hold on the queue's room."""

    def __init__(self, room: QueueRoom, rows: int) -> None:
        self.room = room
        self.rows = rows
        self._deferred = False

    def resize(self, rows: int) -> None:
        """Hold ``rows`` in all (the request's real count, once planned); refused like a full
        queue when growing would exceed the limit."""
        if rows > self.rows:
            self.room._check(rows, own=self.rows)
        self.room.held += rows - self.rows
        self.rows = rows

    def queue(self, rows: int) -> None:
        """Move ``rows`` of the hold into the queue (no check: they were admitted)."""
        if rows > self.rows:
            raise ValueError(f"{rows} rows queued but only {self.rows} held")
        self.rows -= rows
        self.room.held -= rows
        self.room.queued += rows

    def release(self) -> None:
        """Give back what was not queued (unless held until some work ends)."""
        if not self._deferred:
            self.room.held -= self.rows
            self.rows = 0

    def release_when_done(self, work: asyncio.Future[object]) -> None:
        """Keep the hold until ``work`` ends (tokenizing goes on in its thread after the request
        is cancelled), then release it."""
        self._deferred = True

        def done(_: asyncio.Future[object]) -> None:
            self._deferred = False
            self.release()

        work.add_done_callback(done)

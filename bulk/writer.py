"""A bulk job's output side: the input read in chunks (``Chunk``), each chunk's answers
rendered and written in input order with its bad-line reports, the checkpoint saved after whole
chunks only (``Writer``), and the progress bar."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from gradlight.bulk import checkpoint
from gradlight.bulk.checkpoint import CheckpointError, Progress
from gradlight.bulk.formats import OutputOptions, record
from gradlight.bulk.lines import BadLine, Item
from gradlight.bulk.pipeline import Outcome, Pipeline
from gradlight.v1 import gradlight_pb2 as pb

if TYPE_CHECKING:
    from gradlight.bulk.job import JobOptions


@dataclass
class Chunk:
    entries: list[tuple[int, Item | BadLine | None]]  # line number, what it holds
    raw: bytes  # the input bytes of these lines
    end_offset: int

    @property
    def items(self) -> list[Item]:
        return [entry for _, entry in self.entries if isinstance(entry, Item)]


class ProgressBar:
    """A progress bar with texts/s on stderr (tqdm), or nothing."""

    def __init__(self, enabled: bool, total: int, initial: int) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, unit="text", file=sys.stderr, dynamic_ncols=True
            )

    def advance(self, lines: int) -> None:
        if self._bar is not None:
            self._bar.update(lines)

    def say(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class Writer:
    """Writes the answers chunk by chunk and keeps ``done``: the progress after the last whole
    chunk, replaced in one step, never edited (an interruption can come between any two
    statements); ``commit`` saves it, the outputs synced first."""

    def __init__(
        self,
        out: BinaryIO,
        errors: BinaryIO,
        checkpoint_path: Path,
        settings: dict[str, Any],
        done: Progress,
        digest: Any,
    ) -> None:
        self.out, self.errors = out, errors
        self.checkpoint_path, self.settings = checkpoint_path, settings
        self.done, self.digest = done, digest

    def commit(self, complete: bool = False) -> None:
        """Save ``done``: what the outputs hold up to its sizes is finished."""
        for handle in (self.out, self.errors):
            handle.flush()
            os.fsync(handle.fileno())
        checkpoint.save(self.checkpoint_path, self.settings, replace(self.done, complete=complete))

    def run(
        self,
        chunks: Iterator[Chunk],
        pipeline: Pipeline,
        output: OutputOptions,
        bar: ProgressBar,
        options: JobOptions,
        stop_requested: Callable[[], bool],
    ) -> Progress:
        pending: list[Chunk] = []  # read and sent, not yet written

        def groups() -> Iterator[list[Item]]:
            for chunk in chunks:
                pending.append(chunk)
                yield chunk.items

        answered = pipeline.outcomes(groups())
        last_commit = time.monotonic()
        try:
            for answers in answered:
                self.write(pending.pop(0), answers, output, bar)
                if stop_requested():
                    raise KeyboardInterrupt
                if time.monotonic() - last_commit >= options.commit_interval_s:
                    self.commit()
                    last_commit = time.monotonic()
            self.commit(complete=True)
        except BaseException:
            self.commit()  # what was finished is kept; the rest is redone on resume
            raise
        finally:
            answered.close()  # requests still in flight are cancelled
            bar.close()
        return self.done

    def write(
        self, chunk: Chunk, answers: list[Outcome], output: OutputOptions, bar: ProgressBar
    ) -> None:
        if len(answers) != len(chunk.items):
            raise RuntimeError(
                f"{len(answers)} answers for the {len(chunk.items)} texts of lines "
                f"{chunk.entries[0][0]} to {chunk.entries[-1][0]}"
            )
        records, reports = render(chunk, answers, output)
        self.out.write(b"".join(records))
        self.errors.write(b"".join(line for line, _ in reports))
        for _, message in reports:
            bar.say(message)
        self.digest.update(chunk.raw)
        self.done = replace(
            self.done,
            input_offset=chunk.end_offset,
            lines=self.done.lines + len(chunk.entries),
            explained=self.done.explained + len(records),
            bad=self.done.bad + len(reports),
            output_bytes=self.out.tell(),
            errors_bytes=self.errors.tell(),
            input_sha256=self.digest.hexdigest(),
        )
        bar.advance(len(chunk.entries))


def open_at(path: Path, size: int) -> BinaryIO:
    """``path`` opened for appending after its first ``size`` bytes (the rest cut off)."""
    found = path.stat().st_size if path.exists() else 0
    if found < size:
        raise CheckpointError(
            f"{path} has {found} bytes but its checkpoint counts {size} finished: it was "
            "changed after the run stopped; pass --restart to start over"
        )
    handle = path.open("r+b" if path.exists() else "w+b")
    handle.truncate(size)
    handle.seek(size)
    return handle


def render(
    chunk: Chunk, answers: list[pb.TextResult | BadLine], output: OutputOptions
) -> tuple[list[bytes], list[tuple[bytes, str]]]:
    """The chunk's output lines, and its bad-line reports (the line, and what stderr says)."""
    records: list[bytes] = []
    reports: list[tuple[bytes, str]] = []
    answered = iter(answers)
    for number, entry in chunk.entries:
        if entry is None:
            continue  # a blank line
        outcome = entry if isinstance(entry, BadLine) else next(answered)
        if isinstance(outcome, BadLine):
            report = json_line({"line": number, "error": outcome.reason})
            reports.append((report, f"line {number}: {outcome.reason}"))
        else:
            assert isinstance(entry, Item)
            records.append(json_line(record(entry, outcome, output)))
    return records, reports


def json_line(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")

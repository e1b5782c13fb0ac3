"""Step-by-step progress for long exports: a line per step, and a heartbeat while it runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Printer = Callable[[str], None]


class Progress:
    """``with progress.step("tracing ..."):`` prints the step, a heartbeat, and its duration."""

    def __init__(
        self, total_steps: int, printer: Printer | None, heartbeat_s: float = 20.0
    ) -> None:
        self._total = total_steps
        self._printer = printer
        self._heartbeat_s = heartbeat_s
        self._done = 0
        self.durations: dict[str, float] = {}

    def say(self, message: str) -> None:
        """Print ``message`` (a report between steps), if there is a printer."""
        if self._printer is not None:
            self._printer(message)

    @contextmanager
    def step(self, name: str, key: str | None = None) -> Iterator[None]:
        self._done += 1
        prefix = f"[{self._done}/{self._total}] {name}"
        self.say(f"{prefix} ...")
        stop = threading.Event()
        started = time.perf_counter()

        def beat() -> None:
            while not stop.wait(self._heartbeat_s):
                self.say(f"{prefix}: still running ({time.perf_counter() - started:.0f} s)")

        thread = threading.Thread(target=beat, daemon=True)
        if self._printer is not None:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            if thread.is_alive():
                thread.join()
        elapsed = time.perf_counter() - started
        self.durations[key or name] = round(elapsed, 2)
        self.say(f"{prefix}: done in {elapsed:.1f} s")

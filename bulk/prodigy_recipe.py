"""A Prodigy recipe, ``gradlight.explain``: the lines of a JSONL source explained by a running
``gradlight serve`` as they are annotated, each shown with its evidence highlighted above a
choice of the model's labels (the predicted ones chosen)::

    prodigy gradlight.explain DATASET SOURCE.jsonl --server 127.0.0.1:50051 \\
        -F "$(python -m gradlight.bulk.prodigy_recipe)"

The tasks are the ``prodigy`` records of ``gradlight explain --format prodigy`` (formats.py),
with that format's evidence defaults. Prodigy is needed only to run the recipe: without it this
module imports, and ``explain_recipe`` returns the components all the same.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections import deque
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from gradlight.bulk.backends import ServerBackend
from gradlight.bulk.evidence import Selection
from gradlight.bulk.explaining import RequestOptions, explain_items, units
from gradlight.bulk.formats import FORMAT_DEFAULTS, PRODIGY, OutputOptions, record
from gradlight.bulk.job import unit_limits
from gradlight.bulk.lines import BadLine, Item, parse_line
from gradlight.client.connection import DEFAULT_TARGET, Connection, root_certificates
from gradlight.runtime.serving.security import load_tokens
from gradlight.wire.methods import resolve

try:  # only to register the recipe and hash its tasks: the rest works without Prodigy
    import prodigy
except ImportError:
    prodigy = None

RECIPE = "gradlight.explain"
LINES_PER_REQUEST = 16  # lines in one request, at most
AHEAD = 2  # requests sent before the annotator reaches their lines
log = logging.getLogger("gradlight.prodigy")
T = TypeVar("T")


class _Remote:
    """A ``ServerBackend`` on an event loop in a thread of its own, so that the stream can be
    pulled from any thread, one that runs an event loop (Prodigy's web server) included."""

    def __init__(self, connection: Connection) -> None:
        self.backend = ServerBackend(connection=connection)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._closing = threading.Lock()  # the stream's end and Prodigy's on_exit may race

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def close(self) -> None:
        with self._closing:
            if self._loop.is_closed():
                return
            try:
                self.submit(self.backend.close()).result(10)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
                self._loop.close()


def _items(source: Path, max_line_units: int) -> Iterator[Item]:
    """The source's lines, read as they are needed; a bad line is logged and skipped."""
    with source.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            entry = parse_line(number, raw.rstrip(b"\r\n"))
            if isinstance(entry, Item) and units(entry) > max_line_units:
                entry = BadLine(number, f"spans: has {units(entry)}; at most {max_line_units}")
            if isinstance(entry, BadLine):
                log.warning("%s: line %d: %s; skipped", source, number, entry.reason)
            elif entry is not None:
                yield entry


def _groups(items: Iterator[Item], max_lines: int, max_units: int) -> Iterator[list[Item]]:
    """Groups of at most ``max_lines`` lines and ``max_units`` classifications (a line over
    that goes alone)."""
    group: list[Item] = []
    for item in items:
        if group and (len(group) >= max_lines or sum(map(units, group)) + units(item) > max_units):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def _tasks(
    remote: _Remote, groups: Iterator[list[Item]], request: Any, output: OutputOptions
) -> Iterator[dict[str, Any]]:
    """The groups' Prodigy tasks in source order, ``AHEAD`` requests in flight; a line the
    server refuses is logged and skipped (as ``gradlight explain`` reports a bad line)."""
    pending: deque[tuple[list[Item], Future[list[Any]]]] = deque()

    def answered() -> Iterator[dict[str, Any]]:
        items, answers = pending.popleft()
        for item, outcome in zip(items, answers.result(), strict=True):
            if isinstance(outcome, BadLine):
                log.warning("line %d: %s; skipped", item.number, outcome.reason)
            else:
                task = record(item, outcome, output)
                yield prodigy.set_hashes(task, input_keys=("text",)) if prodigy else task

    try:
        for group in groups:
            pending.append((group, remote.submit(explain_items(remote.backend, group, request))))
            if len(pending) > AHEAD:
                yield from answered()
        while pending:
            yield from answered()
    finally:
        for _, answers in pending:
            answers.cancel()
        remote.close()


def explain_recipe(
    dataset: str,
    source: str,
    server: str = DEFAULT_TARGET,
    model: str = "",
    auth_token_file: str | None = None,
    tls: bool = False,
    tls_ca: str | None = None,
    method: str = "",
    lines_per_request: int = LINES_PER_REQUEST,
) -> dict[str, Any]:
    """Annotate the labels of SOURCE's lines (gradlight explain's JSONL: text, optional id,
    optional spans) with a gradlight server's evidence in view. The source is read as the
    annotator goes, in requests of a few lines; a line the server refuses (or that is not a
    usable line) is logged and skipped, and the stream goes on."""
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"{source} is not a file")
    if not 1 <= lines_per_request <= 64:
        raise ValueError(f"lines_per_request is {lines_per_request}; use 1 to 64")
    request = RequestOptions(method=method)
    resolve(request.method_values)  # a method the model cannot have is refused here
    if request.random:  # one seed for the session: its tasks are reproducible
        request = replace(request, seed=secrets.randbits(53))
    roots = root_certificates(tls_ca) if tls_ca else None
    token = load_tokens(Path(auth_token_file)).first if auth_token_file else None
    connection = Connection(server, tls=tls, root_certificates=roots, token=token, round_robin=True)
    remote = _Remote(connection)
    try:
        facts = remote.submit(remote.backend.start(model)).result()
    except BaseException:
        remote.close()
        raise
    defaults = FORMAT_DEFAULTS[PRODIGY]
    output = OutputOptions(
        format=PRODIGY,
        selection=Selection("word", defaults["top_k"], defaults["min_score"]),
        labels=defaults["labels"],
        model=facts.name,
    )
    max_units, max_line_units = unit_limits(request, facts)
    groups = _groups(_items(path, max_line_units), lines_per_request, max_units)
    return {
        "dataset": dataset,
        "stream": _tasks(remote, groups, request, output),
        "view_id": "blocks",
        "config": {
            "blocks": [{"view_id": "html"}, {"view_id": "choice", "text": None}],
            "choice_style": "multiple" if facts.multi_label else "single",
        },
        "on_exit": lambda controller: remote.close(),
    }


# Prodigy's command-line arguments (its recipe annotations: help, kind, short flag, type).
ARGUMENTS = {
    "dataset": ("Dataset to save the annotations to", "positional", None, str),
    "source": ("JSONL of texts, as gradlight explain reads", "positional", None, str),
    "server": ("gradlight serve's gRPC address", "option", "s", str),
    "model": ("The served model (when the server has several)", "option", "m", str),
    "auth_token_file": (
        "File whose first line is the token the server asks for",
        "option",
        "t",
        str,
    ),
    "tls": ("Connect with TLS, trusting the system's roots", "flag", None, bool),
    "tls_ca": ("Connect with TLS, trusting this PEM root certificate", "option", None, str),
    "method": ("Attribution method (default: the server's)", "option", None, str),
    "lines_per_request": ("Lines per request, 1 to 64", "option", None, int),
}
if prodigy is not None:
    prodigy.recipe(RECIPE, **ARGUMENTS)(explain_recipe)


if __name__ == "__main__":
    print(Path(__file__).resolve())  # for prodigy's -F

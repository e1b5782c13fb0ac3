"""``gradlight demo``'s server: ``gradlight serve`` of the demo's artifact, in the fresh,
torch-free process that the demo starts once the model is trained, exported and validated. It
prints the ready link and an example only once both ports serve, so a link is never shown for
a server that did not start. Its command line (``gradlight.demo.serve``) is what the README's
``pkill -HUP -f 'gradlight( |\\.demo\\.)serve'`` finds, as it finds ``gradlight serve``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from gradlight.cli.flags import port
from gradlight.cli.main import build_parser, parse, run

if TYPE_CHECKING:
    from gradlight.runtime.serving.server import RunningServer

# The model's name, and its artifact directory's, so that `gradlight serve` of that directory
# serves it under the same name as the demo does.
MODEL_NAME = "assertion"

DEMO_TEXT = (
    "The patient denied any chest pain. She reported no shortness of breath. "
    "There were no signs of infection."
)


def print_ready(running: RunningServer) -> None:
    """The visualizer's link with an example, and the same example over gRPC."""
    address = running.address
    print()
    if running.http is not None:
        page = running.http.url
        print(f"visualizer: {page} (open it in a browser); an example:")
        print(f"  {page}#text={quote(DEMO_TEXT)}")
    print(f"gRPC: {address} (Ctrl+C stops both). In another terminal:")
    print(f'  .venv/bin/gradlight attribute --server {address} --sentences "{DEMO_TEXT}"')
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    own = argparse.ArgumentParser(prog="gradlight demo", description=__doc__)
    own.add_argument("artifact", type=Path, metavar="ARTIFACT_DIR", help="the demo's artifact")
    own.add_argument("--port", type=port, default=50051, help="gRPC port (default 50051)")
    own.add_argument("--http-port", type=port, default=8080, help="visualizer port (default 8080)")
    given = own.parse_args(argv)
    serve = [str(given.artifact), "--name", MODEL_NAME]
    serve += ["--port", str(given.port), "--http-port", str(given.http_port)]
    args = parse(build_parser(), ["serve", *serve])
    args.command = "demo"  # errors are said as gradlight demo's
    return run(args, on_ready=print_ready)


if __name__ == "__main__":
    sys.exit(main())

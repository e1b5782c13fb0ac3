"""The attribution method flags of ``gradlight explain`` and ``gradlight attribute``, and the
request fields they make (client.method_fields' arguments)."""

from __future__ import annotations

import argparse
from typing import Any

from gradlight.cli.errors import UsageError

# runtime/explanation/methods.py's and runtime/explanation/faithfulness.py's names (not imported:
# the CLI starts without numpy; tests/test_bulk_decisions.py checks they are the same).
METHODS = ("input_x_gradient", "integrated_gradients", "gradient_shap")
INTEGRATIONS = (
    "gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid",
)  # fmt: skip
BASELINES = ("pad", "zeros")
REMOVALS = ("delete", "mask")


def add_method_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "attribution method",
        "how the token scores (the evidence) are computed; integrated_gradients and "
        "gradient_shap need an artifact exported with the path graph (the default)",
    )
    group.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="input_x_gradient (default): one backward pass per label; integrated_gradients: "
        "the gradient integrated from a baseline to the text (--steps points, each a backward "
        "pass per label); gradient_shap: the mean over --samples random points between the "
        "baseline and the text with Gaussian noise",
    )
    group.add_argument(
        "--steps",
        type=int,
        default=None,
        help="integrated_gradients: points on the path (default 32, at most 512)",
    )
    group.add_argument(
        "--integration",
        choices=INTEGRATIONS,
        default=None,
        help="integrated_gradients: the integration rule (default gausslegendre)",
    )
    group.add_argument(
        "--baseline",
        choices=BASELINES,
        default=None,
        help="integrated_gradients and gradient_shap: the pad token's embedding (special "
        "tokens keep theirs, default) or zero vectors",
    )
    group.add_argument(
        "--samples",
        type=int,
        default=None,
        help="gradient_shap: random points per text and label (default 16, at most 512)",
    )
    group.add_argument(
        "--stdev",
        type=float,
        default=None,
        help="gradient_shap: standard deviation of the noise on the embeddings (default 0.01)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=None,
        help="gradient_shap and --faithfulness' random ranking: the random seed. Without it "
        "`gradlight explain` picks one, records it in its checkpoint and in every record, and "
        "sends it with every request, so a resumed job answers as it began; `gradlight "
        "attribute` shows the one the server drew",
    )
    group.add_argument(
        "--faithfulness",
        action="store_true",
        help="also ERASER comprehensiveness and sufficiency (AOPC) of the token scores per "
        "label, and the same for a random ranking of the words (the floor)",
    )
    group.add_argument(
        "--removal",
        choices=REMOVALS,
        default=None,
        help="--faithfulness: remove a word by deleting its tokens (default) or by masking them",
    )


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The request's method fields from the flags; a flag the chosen method does not read is
    refused (it would change nothing)."""
    method = args.method or "input_x_gradient"
    reads = {
        "--steps": (args.steps, method == "integrated_gradients", "--method integrated_gradients"),
        "--integration": (
            args.integration, method == "integrated_gradients", "--method integrated_gradients",
        ),
        "--baseline": (
            args.baseline,
            method != "input_x_gradient",
            "--method integrated_gradients or gradient_shap",
        ),
        "--samples": (args.samples, method == "gradient_shap", "--method gradient_shap"),
        "--stdev": (args.stdev, method == "gradient_shap", "--method gradient_shap"),
        "--seed": (
            args.seed,
            method == "gradient_shap" or args.faithfulness,
            "--method gradient_shap or --faithfulness",
        ),
        "--removal": (args.removal, args.faithfulness, "--faithfulness"),
    }  # fmt: skip
    for flag, (value, read, needs) in reads.items():
        if value is not None and not read:
            raise UsageError(f"{flag} is read only with {needs}")
    return {
        "method": args.method or "",
        "steps": args.steps or 0,
        "integration": args.integration or "",
        "baseline": args.baseline or "",
        "samples": args.samples or 0,
        "stdev": args.stdev,
        "seed": args.seed,
        "faithfulness": args.faithfulness,
        "removal": args.removal or "",
    }

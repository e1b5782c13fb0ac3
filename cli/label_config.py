"""``gradlight label-config``: print the Label Studio labeling config for a model's predictions
(runtime/serving/label_studio_tasks.py), read from an artifact or asked of a running server."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gradlight.cli.flags import add_connection_flags, connection_from_flags

MULTI_LABEL = "multi_label_classification"


def add_label_config_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "label-config",
        help="print the Label Studio labeling config for a model's predictions",
        description="Print the labeling config that the predictions of `gradlight explain "
        "--format label-studio` and the server's Label Studio backend (/label-studio) fit; "
        "paste it into the project's Settings > Labeling Interface > Code.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--artifact", help="an exported artifact directory")
    source.add_argument("--server", help="HOST:PORT of a running server's gRPC port")
    parser.add_argument("--model", default="", help="model name (when several are served)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (with --server)")
    add_connection_flags(parser)
    parser.set_defaults(handler=_label_config)


def _label_config(args: argparse.Namespace) -> int:
    import grpc

    from gradlight.runtime.serving.label_studio_tasks import labeling_config

    try:
        labels, problem_type = _from_artifact(args) if args.artifact else _from_server(args)
    except grpc.RpcError as exc:
        print(f"gradlight label-config: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    print(labeling_config(labels, problem_type == MULTI_LABEL), end="")
    return 0


def _from_artifact(args: argparse.Namespace) -> tuple[list[str], str]:
    from gradlight.artifact.manifest import load_manifest

    manifest = load_manifest(args.artifact, verify_files=False)
    return list(manifest.labels), manifest.problem_type


def _from_server(args: argparse.Namespace) -> tuple[list[str], str]:
    from gradlight.client import Client
    from gradlight.wire.errors import RequestError

    with Client(connection=connection_from_flags(args, args.server), timeout=args.timeout) as c:
        models = {model.name: model for model in c.list_models().models}
    if args.model in models:
        model = models[args.model]
    elif not args.model and len(models) == 1:
        model = next(iter(models.values()))
    else:
        served = ", ".join(models) or "none"
        raise RequestError("--model", f"names no served model ({args.model!r}); serving: {served}")
    return list(model.labels), model.problem_type

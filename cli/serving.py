"""``gradlight serve`` and ``gradlight attribute``: flags mapped onto the runtime and client."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from gradlight.runtime.settings import BatchSettings, EngineSettings, ServiceLimits

_BATCH = BatchSettings()
_LIMITS = ServiceLimits()


def _model_pair(value: str) -> tuple[str, Path]:
    name, separator, path = value.partition("=")
    if not separator or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=ARTIFACT_DIR, got {value!r}")
    return name, Path(path)


def add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve exported artifacts over gRPC and HTTP (ONNX Runtime, dynamic batching)",
        description="Serve ARTIFACT_DIR (and/or --model NAME=ARTIFACT_DIR ...) with the "
        "gradlight.v1.Attributor gRPC service, grpc.health.v1 health and server reflection, "
        "and the visualizer page with JSON endpoints over HTTP. SIGTERM/SIGINT stop gracefully.",
    )
    serve.add_argument("artifact_dir", type=Path, nargs="?", metavar="ARTIFACT_DIR")
    serve.add_argument(
        "--model",
        type=_model_pair,
        action="append",
        default=[],
        metavar="NAME=ARTIFACT_DIR",
        help="serve this artifact under NAME (repeatable)",
    )
    serve.add_argument(
        "--name", default=None, help="name of ARTIFACT_DIR's model (default: its directory name)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=50051, help="port (default 50051; 0 = any)")
    serve.add_argument(
        "--http-port",
        type=int,
        default=8080,
        help="port of the visualizer page and the JSON endpoints, on --host (default 8080; "
        "0 = any)",
    )
    serve.add_argument("--no-http", action="store_true", help="serve gRPC only")
    serve.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto")
    serve.add_argument(
        "--precision",
        choices=("fp32", "fp16"),
        default="fp32",
        help="fp16: the artifact's fp16 graphs (export --fp16); fp32 runs without TF32 on CUDA",
    )
    serve.add_argument(
        "--io-binding",
        choices=("auto", "on", "off"),
        default="auto",
        help="bind inputs and outputs on the device, one copy each way per batch (auto: on CUDA)",
    )
    serve.add_argument("--intra-op-threads", type=int, default=0, help="0 = one per core")
    serve.add_argument("--inter-op-threads", type=int, default=1)
    serve.add_argument("--max-batch-size", type=int, default=_BATCH.max_batch_size)
    serve.add_argument("--max-wait-ms", type=float, default=_BATCH.max_wait_ms)
    serve.add_argument("--max-tokens-per-batch", type=int, default=_BATCH.max_tokens_per_batch)
    serve.add_argument("--max-queue-size", type=int, default=_BATCH.max_queue_size)
    serve.add_argument(
        "--call-cost-tokens",
        type=int,
        default=None,
        help="fixed cost of one ONNX Runtime call in padded tokens: rows are cut into separate "
        "calls where padding them together costs more (default: 16 on CPU, 4096 on CUDA)",
    )
    serve.add_argument("--max-texts-per-request", type=int, default=_LIMITS.max_texts_per_request)
    serve.add_argument(
        "--max-message-bytes",
        type=int,
        default=_LIMITS.max_receive_message_bytes,
        help="largest request accepted",
    )
    serve.add_argument(
        "--grace-period", type=float, default=_LIMITS.grace_period_s, help="seconds (SIGTERM)"
    )
    serve.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        metavar="FILE",
        help="PEM certificate (chain): gRPC and HTTP serve TLS only (with --tls-key)",
    )
    serve.add_argument(
        "--tls-key", type=Path, default=None, metavar="FILE", help="PEM private key of --tls-cert"
    )
    serve.add_argument(
        "--auth-token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="accepted bearer tokens, one per line (# comments): every call but the health "
        "check and the visualizer page needs 'authorization: Bearer TOKEN'",
    )
    serve.set_defaults(handler=_serve, log_level=logging.INFO)


def _serve(args: argparse.Namespace) -> int:
    from gradlight.runtime.server import ServerSettings, serve

    artifacts: dict[str, Path] = {}
    if args.artifact_dir is not None:
        artifacts[args.name or args.artifact_dir.resolve().name] = args.artifact_dir
    for name, path in args.model:
        if name in artifacts:
            raise ValueError(f"model name {name!r} is given twice")
        artifacts[name] = path
    if not artifacts:
        raise ValueError("nothing to serve: give ARTIFACT_DIR or --model NAME=ARTIFACT_DIR")
    engine = EngineSettings(
        provider=args.provider,
        intra_op_threads=args.intra_op_threads,
        inter_op_threads=args.inter_op_threads,
        precision=args.precision,
        io_binding={"auto": None, "on": True, "off": False}[args.io_binding],
    )
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        http_port=None if args.no_http else args.http_port,
        batch=BatchSettings(
            max_batch_size=args.max_batch_size,
            max_wait_ms=args.max_wait_ms,
            max_tokens_per_batch=args.max_tokens_per_batch,
            max_queue_size=args.max_queue_size,
            call_cost_tokens=args.call_cost_tokens,
        ),
        limits=ServiceLimits(
            max_texts_per_request=args.max_texts_per_request,
            max_receive_message_bytes=args.max_message_bytes,
            grace_period_s=args.grace_period,
        ),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        auth_token_file=args.auth_token_file,
    )
    serve(artifacts, engine, settings)
    return 0


def add_attribute_parser(commands: Any) -> None:
    attribute = commands.add_parser(
        "attribute",
        help="ask a running server to explain texts; tokens coloured by score",
    )
    attribute.add_argument("texts", nargs="+", metavar="TEXT")
    attribute.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT")
    attribute.add_argument("--model", default="", help="model name (when several are served)")
    attribute.add_argument(
        "--label", default=None, help="colour for this label (default: predicted)"
    )
    attribute.add_argument("--sentences", action="store_true", help="also sentence attributions")
    attribute.add_argument("--max-length", type=int, default=0)
    attribute.add_argument("--json", action="store_true", help="print the raw response as JSON")
    attribute.add_argument("--no-color", action="store_true", help="plain text, scores in brackets")
    attribute.add_argument("--timeout", type=float, default=60.0, help="seconds")
    attribute.add_argument(
        "--tls-ca",
        type=Path,
        default=None,
        metavar="FILE",
        help="connect with TLS, trusting this PEM root certificate",
    )
    attribute.add_argument(
        "--tls", action="store_true", help="connect with TLS, trusting the system's roots"
    )
    attribute.add_argument(
        "--auth-token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="send the first token of FILE as 'authorization: Bearer TOKEN'",
    )
    attribute.set_defaults(handler=_attribute)


def _attribute(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format

    from gradlight.client import Client
    from gradlight.client.render import render_result
    from gradlight.runtime.security import load_tokens

    token = load_tokens(args.auth_token_file).first if args.auth_token_file else None
    tls_ca = None
    if args.tls_ca is not None:
        try:
            tls_ca = args.tls_ca.read_bytes()
        except OSError as exc:
            raise ValueError(f"--tls-ca {args.tls_ca}: cannot be read ({exc.strerror})") from None
    with Client(
        args.server, timeout=args.timeout, tls=args.tls, tls_ca=tls_ca, token=token
    ) as client:
        try:
            response = client.attribute(
                args.texts,
                model=args.model,
                max_length=args.max_length,
                sentence_attributions=args.sentences,
                labels=[args.label] if args.label else [],
            )
        except grpc.RpcError as exc:
            print(f"gradlight attribute: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    if args.json:
        message = json_format.MessageToDict(
            response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        print(json.dumps(message, ensure_ascii=False, indent=2))
        return 0
    color = not args.no_color and sys.stdout.isatty()
    for result in response.results:
        print(render_result(result, args.label, color=color))
        print()
    return 0

"""``gradlight serve`` and ``gradlight attribute``: flags mapped onto the runtime and client."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from gradlight.artifact.precisions import CHOICES as PRECISION_CHOICES
from gradlight.artifact.precisions import DEFAULT as DEFAULT_PRECISION
from gradlight.artifact.precisions import help_text as precision_help
from gradlight.cli import long_text_flags
from gradlight.cli.errors import UsageError
from gradlight.cli.flags import (
    add_connection_flags,
    add_execution_flags,
    add_server_security_flags,
    connection_from_flags,
    port,
    said_as_flags,
    server_security_from_flags,
)
from gradlight.cli.method_flags import add_method_flags, method_options
from gradlight.runtime.serving.http_limits import HttpLimits
from gradlight.runtime.settings import BatchSettings, EngineSettings, ServiceLimits

_BATCH = BatchSettings()
_LIMITS = ServiceLimits()
_HTTP = HttpLimits()


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
    serve.add_argument(
        "artifact_dir",
        type=Path,
        nargs="?",
        metavar="ARTIFACT_DIR",
        help="an artifact written by gradlight export (or --model NAME=ARTIFACT_DIR)",
    )
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
    _add_address_flags(serve)
    _add_engine_flags(serve)
    _add_batching_flags(serve)
    _add_limit_flags(serve)
    long_text_flags.add_server_long_text_flags(serve)
    _add_http_limit_flags(serve)
    add_server_security_flags(serve)
    # on_ready: called with the running server once both ports serve (the demo's ready link).
    serve.set_defaults(handler=_serve, log_level=logging.INFO, on_ready=None)


def _add_address_flags(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("addresses")
    group.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    group.add_argument(
        "--port", type=port, default=50051, help="gRPC port, on --host (default 50051; 0 = any)"
    )
    group.add_argument(
        "--http-port",
        type=port,
        default=8080,
        help="port of the visualizer page and the JSON endpoints, on --host (default 8080; "
        "0 = any)",
    )
    group.add_argument("--no-http", action="store_true", help="serve gRPC only")


def _add_engine_flags(serve: argparse.ArgumentParser) -> None:
    group = add_execution_flags(
        serve, threads_flag="--intra-op-threads", threads_help="0 = one per core"
    )
    group.add_argument(
        "--inter-op-threads",
        type=int,
        default=1,
        help="ONNX Runtime threads running independent operators in parallel (default 1)",
    )
    group.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default=DEFAULT_PRECISION,
        help=precision_help(),
    )
    group.add_argument(
        "--share-weights",
        action="store_true",
        help="CPU: one copy of the weights for all the artifact's graphs, weight pre-packing "
        "off (less memory, a few percent slower)",
    )
    group.add_argument(
        "--snapshot-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where each model keeps its private, verified copy of its artifact, so that "
        "changing the artifact on disk never touches a served model (default: the system's "
        "temporary directory, $TMPDIR)",
    )
    group.add_argument(
        "--io-binding",
        choices=("auto", "on", "off"),
        default="auto",
        help="bind inputs and outputs on the device, one copy each way per batch (auto: on CUDA)",
    )


def _add_batching_flags(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("dynamic batching")
    group.add_argument(
        "--max-batch-size",
        type=int,
        default=_BATCH.max_batch_size,
        help=f"rows (token sequences) per ONNX Runtime call (default {_BATCH.max_batch_size})",
    )
    group.add_argument(
        "--max-wait-ms",
        type=float,
        default=_BATCH.max_wait_ms,
        help="how long the oldest waiting row waits for companions, in milliseconds "
        f"(default {_BATCH.max_wait_ms:g})",
    )
    group.add_argument(
        "--max-tokens-per-batch",
        type=int,
        default=None,
        help="rows x padded length per call (default: 1024 on CPU, 8192 on CUDA)",
    )
    group.add_argument(
        "--max-queue-size",
        type=int,
        default=_BATCH.max_queue_size,
        help="rows waiting per model; a request that does not fit is refused with "
        f"RESOURCE_EXHAUSTED (default {_BATCH.max_queue_size})",
    )
    group.add_argument(
        "--call-cost-tokens",
        type=int,
        default=None,
        help="fixed cost of one ONNX Runtime call in padded tokens: rows are cut into separate "
        "calls where padding them together costs more (default: 16 on CPU, 4096 on CUDA)",
    )


def _add_limit_flags(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("limits")
    group.add_argument(
        "--max-texts-per-request",
        type=int,
        default=_LIMITS.max_texts_per_request,
        help="more texts in one request is INVALID_ARGUMENT (use AttributeStream; default "
        f"{_LIMITS.max_texts_per_request})",
    )
    group.add_argument(
        "--max-message-bytes",
        type=int,
        default=_LIMITS.max_receive_message_bytes,
        help="largest request accepted",
    )
    group.add_argument(
        "--grace-period", type=float, default=_LIMITS.grace_period_s, help="seconds (SIGTERM)"
    )


def _add_http_limit_flags(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group(
        "HTTP connections",
        "timeouts and a cap that keep slow or idle clients from holding the "
        "HTTP server's connections; a client that times out is counted in "
        "gradlight_http_client_errors",
    )
    group.add_argument(
        "--http-header-timeout",
        type=float,
        default=_HTTP.header_timeout_s,
        metavar="SECONDS",
        help="close a connection whose request head is not complete this long after its first "
        f"byte (default {_HTTP.header_timeout_s:g}); also bounds the TLS handshake",
    )
    group.add_argument(
        "--http-body-timeout",
        type=float,
        default=_HTTP.body_timeout_s,
        metavar="SECONDS",
        help="answer 408 and close when a request body is not complete this long after its "
        f"head (default {_HTTP.body_timeout_s:g}; raise it for large bodies on slow links)",
    )
    group.add_argument(
        "--http-idle-timeout",
        type=float,
        default=_HTTP.idle_timeout_s,
        metavar="SECONDS",
        help="close a keep-alive connection idle this long (default "
        f"{_HTTP.idle_timeout_s:g}; behind a reverse proxy, above the proxy's own)",
    )
    group.add_argument(
        "--http-max-connections",
        type=int,
        default=_HTTP.max_connections,
        metavar="N",
        help="open HTTP connections at most; one more gets 503 with Retry-After and is closed "
        f"(default {_HTTP.max_connections})",
    )


# The settings whose flag is not named after them (the others: max_batch_size, --max-batch-size).
_SERVE_FLAGS = {
    "max_receive_message_bytes": "--max-message-bytes",
    "grace_period_s": "--grace-period",
    "header_timeout_s": "--http-header-timeout",
    "body_timeout_s": "--http-body-timeout",
    "idle_timeout_s": "--http-idle-timeout",
    "max_connections": "--http-max-connections",
}


def _artifacts(args: argparse.Namespace) -> dict[str, Path]:
    """The models to serve by name; a name gradlight cannot serve is refused naming its flag."""
    from gradlight.artifact.names import check_model_name
    from gradlight.artifact.tasks import served_artifacts

    named: list[tuple[str, Path, str]] = []  # name, artifact, where the name comes from
    if args.artifact_dir is not None:
        source = "--name" if args.name else "ARTIFACT_DIR's directory name (or give --name)"
        named.append((args.name or args.artifact_dir.resolve().name, args.artifact_dir, source))
    named += [(name, path, "--model") for name, path in args.model]
    if not named:
        raise UsageError("nothing to serve: give ARTIFACT_DIR or --model NAME=ARTIFACT_DIR")
    artifacts: dict[str, Path] = {}
    for given, path, source in named:
        try:
            check_model_name(given)
            served = served_artifacts(given, path)  # a multi-task model: one per task
        except ValueError as exc:  # an unusable name, or an unreadable tasks.json
            raise UsageError(f"{source}: {exc}") from None
        for name, artifact in served.items():
            if name in artifacts:
                raise UsageError(f"model name {name!r} is given twice")
            artifacts[name] = artifact
    return artifacts


def _serve(args: argparse.Namespace) -> int:
    from gradlight.runtime.serving.process import serve
    from gradlight.runtime.serving.server import ServerSettings

    artifacts = _artifacts(args)
    security = server_security_from_flags(args)
    with said_as_flags(_SERVE_FLAGS):
        engine = EngineSettings(
            provider=args.provider,
            intra_op_threads=args.intra_op_threads,
            inter_op_threads=args.inter_op_threads,
            precision=args.precision,
            share_weights=args.share_weights,
            snapshot_dir=args.snapshot_dir,
            io_binding={"auto": None, "on": True, "off": False}[args.io_binding],
        )
        batch = BatchSettings(
            max_batch_size=args.max_batch_size,
            max_wait_ms=args.max_wait_ms,
            max_tokens_per_batch=args.max_tokens_per_batch,
            max_queue_size=args.max_queue_size,
            call_cost_tokens=args.call_cost_tokens,
        )
        limits = ServiceLimits(
            max_texts_per_request=args.max_texts_per_request,
            max_receive_message_bytes=args.max_message_bytes,
            grace_period_s=args.grace_period,
        )
        documents = long_text_flags.documents_from_flags(args)
        http = HttpLimits(
            header_timeout_s=args.http_header_timeout,
            body_timeout_s=args.http_body_timeout,
            idle_timeout_s=args.http_idle_timeout,
            max_connections=args.http_max_connections,
        )
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        http_port=None if args.no_http else args.http_port,
        batch=batch,
        limits=limits,
        documents=documents,
        metrics_public=args.metrics_public,
        http=http,
        **security,
    )
    with said_as_flags(_SERVE_FLAGS):  # settings refused while the models load, too
        serve(artifacts, engine, settings, on_ready=args.on_ready)
    return 0


def add_attribute_parser(commands: Any) -> None:
    attribute = commands.add_parser(
        "attribute",
        help="ask a running server to explain texts; tokens coloured by score",
    )
    attribute.add_argument("texts", nargs="+", metavar="TEXT", help="the texts to explain")
    attribute.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT")
    attribute.add_argument("--model", default="", help="model name (when several are served)")
    attribute.add_argument(
        "--label", default=None, help="colour for this label (default: predicted)"
    )
    attribute.add_argument("--sentences", action="store_true", help="also sentence attributions")
    attribute.add_argument(
        "--max-length", type=int, default=0, help="token budget (default 0: the model's maximum)"
    )
    long_text_flags.add_long_text_flags(attribute)
    attribute.add_argument("--json", action="store_true", help="print the raw response as JSON")
    attribute.add_argument("--no-color", action="store_true", help="plain text, scores in brackets")
    attribute.add_argument("--timeout", type=float, default=60.0, help="seconds")
    add_method_flags(attribute)
    add_connection_flags(attribute)
    attribute.set_defaults(handler=_attribute)


def _attribute(args: argparse.Namespace) -> int:
    import grpc

    from gradlight.client import Client
    from gradlight.client.render import render_result
    from gradlight.runtime.serving.json_messages import to_json

    method = method_options(args)
    long_texts = long_text_flags.long_text_fields(args)
    connection = connection_from_flags(args, args.server)
    with Client(connection=connection, timeout=args.timeout) as client:
        try:
            response = client.attribute(
                args.texts,
                model=args.model,
                max_length=args.max_length,
                sentence_attributions=args.sentences,
                labels=[args.label] if args.label else [],
                **long_texts,
                **method,
            )
        except grpc.RpcError as exc:
            _refused_as_flags(exc, len(args.texts))
            print(f"gradlight attribute: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    if args.json:  # as the HTTP endpoint answers: the fields that apply, in the proto's order
        print(json.dumps(to_json(response), ensure_ascii=False, indent=2))
        return 0
    color = not args.no_color and sys.stdout.isatty()
    for result in response.results:
        print(render_result(result, args.label, color=color))
        print()
    return 0


# The request fields whose flag is not named after them (the others: steps, --steps).
_ATTRIBUTE_FLAGS = {"labels": "--label", "texts": "TEXT"}
_USER_FIXABLE = frozenset({"INVALID_ARGUMENT", "NOT_FOUND"})


def _refused_as_flags(exc: Any, texts: int) -> None:
    """A request the server refused for what the user typed (a field's value, an unknown
    model) said as the flag or argument that set it, as a UsageError (exit 2); other failures
    (the server unreachable, overloaded) return for the caller to report."""
    from gradlight.wire.error_details import error_details

    details = error_details(exc)
    if details.code.name not in _USER_FIXABLE or not details.field:
        return
    name, _, index = details.field.partition("[")
    if "." in name or "." in index:  # a nested field no flag sets as such
        return
    flag = _ATTRIBUTE_FLAGS.get(name, "--" + name.replace("_", "-"))
    if flag == "TEXT" and texts > 1:
        flag = f"TEXT {int(index.rstrip(']') or 0) + 1}"
    # NOT_FOUND carries no BadRequest: its message starts with the field ("model 'x' is ...").
    description = details.description or details.message.removeprefix(details.field).lstrip(": ")
    raise UsageError(f"{flag}: {description}") from None

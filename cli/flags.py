"""Flag groups that several commands share, each defined once: how a client connects
(``attribute``, ``explain --server``), where and on how many threads the model runs (``serve``,
``explain``, ``bench``), and the server's TLS and tokens (``serve``). Each group comes with the
function that turns the parsed flags into what the library takes, refusing unusable values
with a ``UsageError`` that names the flag."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradlight.cli.errors import UsageError
from gradlight.runtime.serving.security import tls_pair_problem
from gradlight.runtime.settings import PROVIDERS, SettingsError

if TYPE_CHECKING:
    from gradlight.client.connection import Connection

PROVIDER_HELP = "ONNX Runtime execution provider: auto (CUDA when available, else CPU), cpu or cuda"


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


@contextmanager
def said_as_flags(flags: Mapping[str, str]) -> Iterator[None]:
    """Settings refused while building (runtime/settings.py) said in the command's flag
    names: ``flags`` maps a setting (``intra_op_threads``) to its flag (``--threads``)."""
    try:
        yield
    except SettingsError as exc:
        flag = flags.get(exc.setting, "--" + exc.setting.replace("_", "-"))
        raise UsageError(f"{flag} {exc.requirement}") from None


# ---- how a client connects ----


def add_connection_flags(parser: argparse.ArgumentParser, title: str = "connection") -> None:
    group = parser.add_argument_group(title, "TLS and the bearer token the client sends")
    group.add_argument(
        "--tls", action="store_true", help="connect with TLS, trusting the system's roots"
    )
    group.add_argument(
        "--tls-ca",
        type=Path,
        default=None,
        metavar="FILE",
        help="connect with TLS, trusting this PEM root certificate",
    )
    group.add_argument(
        "--auth-token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="send the first token of FILE as 'authorization: Bearer TOKEN'",
    )


def _read_tls_ca(path: Path) -> bytes:
    from gradlight.client.connection import is_pem_certificate
    from gradlight.runtime.serving.security import read_file

    data = read_file("--tls-ca", path)
    if not is_pem_certificate(data):
        raise UsageError(
            f"--tls-ca {path}: is not a PEM certificate (no -----BEGIN CERTIFICATE----- line)"
        )
    return data


def connection_from_flags(
    args: argparse.Namespace, target: str, *, round_robin: bool = False
) -> Connection:
    """The connection that ``--tls``, ``--tls-ca`` and ``--auth-token-file`` describe (the
    first token of the file is sent; errors name the file, never show a token)."""
    from gradlight.client.connection import Connection
    from gradlight.runtime.serving.security import load_tokens

    if not target.strip():
        raise UsageError("--server is empty; give HOST:PORT")
    token = load_tokens(args.auth_token_file).first if args.auth_token_file else None
    roots = _read_tls_ca(args.tls_ca) if args.tls_ca is not None else None
    return Connection(
        target, tls=args.tls, root_certificates=roots, token=token, round_robin=round_robin
    )


# ---- where and on how many threads the model runs ----


def add_execution_flags(
    parser: argparse.ArgumentParser,
    *,
    threads_flag: str,
    threads_help: str,
    threads_type: Callable[[str], int] = int,
    threads_default: int | None = 0,
    providers: Sequence[str] = PROVIDERS,
    provider_default: str = "auto",
    provider_help: str = PROVIDER_HELP,
) -> Any:
    """``--provider`` and the command's threads flag (its own name and default: ``--threads``
    or ``--intra-op-threads``); returns the group, for a command's further execution flags."""
    group = parser.add_argument_group("execution", "where and on how many threads it runs")
    group.add_argument(
        "--provider",
        choices=tuple(providers),
        default=provider_default,
        help=f"{provider_help} (default {provider_default})",
    )
    group.add_argument(threads_flag, type=threads_type, default=threads_default, help=threads_help)
    return group


# ---- the server's TLS and tokens ----


def add_server_security_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("security", "TLS and the bearer tokens the server accepts")
    group.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        metavar="FILE",
        help="PEM certificate (chain): gRPC and HTTP serve TLS only (with --tls-key)",
    )
    group.add_argument(
        "--tls-key", type=Path, default=None, metavar="FILE", help="PEM private key of --tls-cert"
    )
    group.add_argument(
        "--auth-token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="accepted bearer tokens, one per line (# comments): every call but the health "
        "check and the visualizer page needs 'authorization: Bearer TOKEN'",
    )
    group.add_argument(
        "--metrics-public",
        action="store_true",
        help="serve GET /metrics (Prometheus) without a token even with --auth-token-file",
    )


def server_security_from_flags(args: argparse.Namespace) -> dict[str, Path | None]:
    """``ServerSettings``' ``tls_cert``, ``tls_key`` and ``auth_token_file``
    (runtime/serving/server.py reads and checks the files, naming each)."""
    if problem := tls_pair_problem(args.tls_cert, args.tls_key, ("--tls-cert", "--tls-key")):
        raise UsageError(problem)
    return {
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "auth_token_file": args.auth_token_file,
    }

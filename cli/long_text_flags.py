"""The flags for texts longer than the model's window: ``gradlight serve``'s set the server's
default and limits (runtime/settings.py: ``DocumentSettings``); ``gradlight explain``'s and
``gradlight attribute``'s set the request fields ``long_texts``, ``window_stride`` and
``aggregation`` (the proto's PredictRequest and AttributeRequest)."""

from __future__ import annotations

import argparse
from typing import Any

from gradlight.cli.errors import UsageError
from gradlight.runtime.settings import LONG_TEXTS, DocumentSettings

# runtime/explanation/windows.py's AGGREGATIONS (not imported: it loads numpy and the tokenizer
# for a command that only parses its flags; tests/test_long_texts_surfaces.py checks they agree).
AGGREGATIONS = ("mean", "max")
_DOCUMENTS = DocumentSettings()


def add_server_long_text_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "long texts", "texts longer than the model's window (its max_length, or the request's)"
    )
    group.add_argument(
        "--long-texts",
        choices=LONG_TEXTS,
        default=_DOCUMENTS.long_texts,
        help="what a request that does not say gets: truncate (cut at the window, flagged "
        "truncated) or windows (read whole in overlapping windows, their logits aggregated) "
        f"(default {_DOCUMENTS.long_texts})",
    )
    group.add_argument(
        "--window-stride",
        type=int,
        default=_DOCUMENTS.window_stride,
        metavar="N",
        help="text tokens between windows' starts, for a request that sends 0 (default 0: "
        "half a window)",
    )
    group.add_argument(
        "--max-document-tokens",
        type=int,
        default=_DOCUMENTS.max_document_tokens,
        metavar="N",
        help="the most tokens a text read as windows may have; a longer one is refused with "
        f"INVALID_ARGUMENT (default {_DOCUMENTS.max_document_tokens})",
    )
    group.add_argument(
        "--max-windows-per-request",
        type=int,
        default=_DOCUMENTS.max_windows_per_request,
        metavar="N",
        help="the most windows a request's texts may need in all; more is INVALID_ARGUMENT "
        f"(default {_DOCUMENTS.max_windows_per_request})",
    )


def documents_from_flags(args: argparse.Namespace) -> DocumentSettings:
    """The server's ``DocumentSettings`` (a SettingsError names the setting: build it inside
    cli/flags.py's ``said_as_flags``)."""
    return DocumentSettings(
        long_texts=args.long_texts,
        window_stride=args.window_stride,
        max_document_tokens=args.max_document_tokens,
        max_windows_per_request=args.max_windows_per_request,
    )


def add_long_text_flags(group: Any, default_said: str = "the server's") -> None:
    """The request's long-text flags on ``group`` (a parser or an argument group);
    ``default_said``: what leaving ``--long-texts`` out means."""
    group.add_argument(
        "--long-texts",
        choices=LONG_TEXTS,
        default=None,
        help="texts longer than the window: truncate (cut, flagged truncated) or windows (read "
        f"whole in overlapping windows; tokens and spans cover the whole text) (default: "
        f"{default_said})",
    )
    group.add_argument(
        "--window-stride",
        type=int,
        default=None,
        metavar="N",
        help="with --long-texts windows: text tokens between windows' starts (default: the "
        "server's, else half a window)",
    )
    group.add_argument(
        "--aggregation",
        choices=AGGREGATIONS,
        default=None,
        help="with --long-texts windows: how the windows' logits make the text's (default: "
        "max for multi-label models, mean for single-label ones)",
    )


def long_text_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields ``long_texts``, ``window_stride`` and ``aggregation`` from the flags
    (unset: ``""``, 0, ``""``); a stride or an aggregation without ``--long-texts windows`` is
    refused (it would change nothing, or be refused by a server that truncates)."""
    given = {"--window-stride": args.window_stride, "--aggregation": args.aggregation}
    for flag, value in given.items():
        if value is not None and args.long_texts != "windows":
            raise UsageError(f"{flag} is read only with --long-texts windows")
    if args.window_stride is not None and args.window_stride < 0:
        raise UsageError(f"--window-stride is {args.window_stride}; use 0 (half a window) or more")
    return {
        "long_texts": args.long_texts or "",
        "window_stride": args.window_stride or 0,
        "aggregation": args.aggregation or "",
    }

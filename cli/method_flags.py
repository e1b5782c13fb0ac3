"""The attribution method flags of ``gradlight explain`` and ``gradlight attribute``, and the
request fields they make (client.method_fields' arguments): one flag per field of
gradlight.wire.methods (its name, choices, default and limit), so that a new setting needs no
edit here."""

from __future__ import annotations

import argparse
from typing import Any

from gradlight.cli.errors import UsageError
from gradlight.wire.methods import FIELDS, FIELDS_BY_NAME, METHOD_LIST, METHODS, Field

# What the CLI adds to a field's help: its own behaviour, not the field's.
_CLI_NOTES = {
    "seed": "Without it `gradlight explain` picks one, records it in its checkpoint and in every "
    "record, and sends it with every request, so a resumed job answers as it began; `gradlight "
    "attribute` shows the one the server drew",
}


def add_method_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "attribution method",
        "how the token scores (the evidence) are computed; integrated_gradients and "
        "gradient_shap need an artifact exported with the path graph (the default)",
    )
    for field in FIELDS:
        if field.type is bool:
            group.add_argument(field.flag, action="store_true", help=_help(field))
        else:
            choices = field.choices or None
            group.add_argument(
                field.flag, type=field.type, choices=choices, default=None, help=_help(field)
            )


def _help(field: Field) -> str:
    if field.name == "method":
        return "; ".join(
            f"{method.name}{' (default)' if method.name == field.default else ''}: {method.help}"
            for method in METHOD_LIST
        )
    said = f" ({field.said_default})" if field.said_default else ""
    note = f". {_CLI_NOTES[field.name]}" if field.name in _CLI_NOTES else ""
    return f"{field.help}{said}{note}"


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The request's method fields from the flags; a flag the chosen method does not read is
    refused (it would change nothing)."""
    given = {field.name: getattr(args, field.name) for field in FIELDS}
    for field in FIELDS:
        if given[field.name] is not None and not field.read_by(args.method, args.faithfulness):
            raise UsageError(f"{field.flag} is read only with {_readers(field)}")
    return {
        field.name: field.unset if given[field.name] is None else given[field.name]
        for field in FIELDS
    }


def _readers(field: Field) -> str:
    """``--method integrated_gradients or gradient_shap``, ``--faithfulness``, ..."""
    methods = [name for name in field.read_with if name in METHODS]
    said = [f"--method {' or '.join(methods)}"] if methods else []
    flags = [FIELDS_BY_NAME[name].flag for name in field.read_with if name not in METHODS]
    return " or ".join(said + flags)

"""The names a model is served under: what export checks before writing and serve before
loading, so that an artifact exported under a name can be served under it."""

from __future__ import annotations

import re

from gradlight.artifact.errors import ModelNameError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127})?")


def check_model_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ModelNameError(
            f"model name {name!r} must be 1-128 letters, digits, '.', '_' or '-', starting with "
            "a letter or digit (a task of a multi-task model: MODEL/TASK, each part so)"
        )
    return name

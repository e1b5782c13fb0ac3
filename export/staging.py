"""The output directory: written as a temporary sibling, renamed into place only when whole."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gradlight.export.errors import ExportError

T = TypeVar("T")


def staging_dir(out_dir: Path, overwrite: bool) -> Path:
    """Check ``out_dir`` can receive an artifact; return a fresh temporary sibling for it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"output {out_dir} exists and is not a directory; choose another OUT_DIR")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ExportError(
            f"output directory {out_dir} exists and is not empty; choose a new OUT_DIR or pass "
            "--overwrite to replace it"
        )
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
    except OSError as exc:
        raise ExportError(
            f"cannot write the artifact under {parent}: {exc.strerror or exc}; choose a writable "
            "OUT_DIR"
        ) from exc


def build_into(out_dir: Path, overwrite: bool, build: Callable[[Path], T]) -> T:
    """Run ``build(staging)`` and move the staging directory to ``out_dir`` once it returns;
    if it raises, leave nothing behind."""
    staging = staging_dir(out_dir, overwrite)
    try:
        result = build(staging)
        publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def publish(staging: Path, out_dir: Path) -> None:
    """Move the finished artifact into place; replace an old one only once the new one is whole."""
    backup = None
    if out_dir.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=staging.parent))
        os.replace(out_dir, backup / "artifact")
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp made it private
    try:
        os.replace(staging, out_dir)
    except OSError:
        if backup is not None:  # put the old artifact back
            os.replace(backup / "artifact", out_dir)
            backup.rmdir()
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)

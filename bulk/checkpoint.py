"""What a bulk job has finished, kept next to its output so an interrupted job resumes without
redoing or duplicating a line.

The job writes output (and bad-line) records, flushes them to disk, then replaces the
checkpoint atomically: how many input lines and bytes are done, a hash of those input bytes,
and the sizes of the two output files at that moment. On resume the outputs are cut back to
those sizes (dropping anything written after the last checkpoint, a half-written line
included) and the input is read on from that byte, once its hash shows it is the same input.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gradlight.wire.errors import GradlightError

VERSION = 1


class CheckpointError(GradlightError):
    """The output cannot be resumed as asked (different input or settings)."""


@dataclass
class Progress:
    input_offset: int = 0  # bytes of input done
    lines: int = 0  # input lines done (blank and bad lines included)
    explained: int = 0
    bad: int = 0
    output_bytes: int = 0
    errors_bytes: int = 0
    input_sha256: str = field(default_factory=lambda: hashlib.sha256().hexdigest())
    complete: bool = False


def paths(output: Path) -> tuple[Path, Path]:
    """The bad-line report and the checkpoint of ``output``."""
    return output.with_name(output.name + ".errors.jsonl"), output.with_name(
        output.name + ".checkpoint.json"
    )


def save(path: Path, settings: dict[str, Any], progress: Progress) -> None:
    data = {"version": VERSION, "settings": settings, "progress": asdict(progress)}
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def load(path: Path, settings: dict[str, Any]) -> Progress:
    """The progress saved at ``path``, if it was made with the same ``settings``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != VERSION:
            raise CheckpointError(f"{path} is of another version ({data.get('version')!r})")
        progress = Progress(**data["progress"])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc})") from exc
    if data["settings"] != settings:
        changed = sorted(
            key
            for key in set(settings) | set(data["settings"])
            if settings.get(key) != data["settings"].get(key)
        )
        raise CheckpointError(
            f"the output was started with other settings ({', '.join(changed)} differ); run "
            "with the same ones to resume, or with --restart to start over"
        )
    return progress


def hash_prefix(handle: BinaryIO, length: int) -> hashlib._Hash:
    """A sha256 of the first ``length`` bytes of ``handle`` (left positioned after them)."""
    digest = hashlib.sha256()
    handle.seek(0)
    remaining = length
    while remaining > 0:
        block = handle.read(min(remaining, 1 << 20))
        if not block:
            break
        digest.update(block)
        remaining -= len(block)
    if remaining:
        raise CheckpointError(
            f"the input is shorter ({length - remaining} bytes) than the part already done "
            f"({length} bytes): it is not the input this output was made from"
        )
    return digest

"""Copies of an exported artifact that a test may damage or edit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gradlight.artifact.manifest import MANIFEST_NAME


def copy_artifact(exported, tmp_path: Path) -> Path:
    """A copy of the tiny BERT's artifact in ``tmp_path/artifact``."""
    artifact = tmp_path / "artifact"
    shutil.copytree(exported("bert"), artifact)
    return artifact


def edit_manifest(artifact: Path, change) -> None:
    """Rewrite ``artifact``'s manifest with ``change`` applied to its JSON object."""
    path = artifact / MANIFEST_NAME
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))

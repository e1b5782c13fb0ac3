"""What can be wrong with an artifact or the name it is served under."""

from __future__ import annotations

from gradlight.wire.errors import GradlightError


class ArtifactError(GradlightError):
    """An artifact directory is missing, incomplete, tampered with or of an unknown format."""


class ModelNameError(GradlightError, ValueError):
    """A name gradlight cannot serve a model under (artifact/names.py)."""

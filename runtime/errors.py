"""Errors of the serving side; each message says what is wrong and how to fix it."""

from __future__ import annotations


class GradlightError(Exception):
    """Base class of the errors gradlight reports to its users."""


class ArtifactError(GradlightError):
    """An artifact directory is missing, incomplete, tampered with or of an unknown format."""

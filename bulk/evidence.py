"""The evidence of one answer, per label: runtime/explanation/evidence.py's, re-exported here for
the bulk job and its formats (the Label Studio backend of ``gradlight serve`` uses the same)."""

from __future__ import annotations

from gradlight.runtime.explanation.evidence import (
    TOKEN,
    UNITS,
    WORD,
    Evidence,
    Selection,
    _items,
    evidence,
    select,
    words,
)

__all__ = [
    "TOKEN",
    "UNITS",
    "WORD",
    "Evidence",
    "Selection",
    "_items",
    "evidence",
    "select",
    "words",
]

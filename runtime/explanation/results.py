"""What the attributor answers per text (runtime/explanation/attributor.py): probabilities, token
and sentence scores, entity spans; the API layer turns them into messages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.explanation.entities import MarkedSpan
from gradlight.runtime.explanation.faithfulness import FaithfulnessResult


@dataclass(frozen=True)
class SentenceResult:
    start: int
    end: int
    scores: np.ndarray  # [K]


@dataclass(frozen=True)
class WindowResult:
    """One window of a text read as windows: the characters of its text tokens, those whose
    scores it gives (``scored``; empty where none), its own prediction and, for the path
    methods, its completeness gaps."""

    start: int
    end: int
    scored_start: int
    scored_end: int
    probabilities: np.ndarray  # [K]
    predicted_label: str
    completeness_gaps: np.ndarray | None = None  # [K]


@dataclass(frozen=True)
class TextResult:
    """One text's answer. Every per-label array follows ``labels``."""

    text: str
    labels: tuple[str, ...]
    probabilities: np.ndarray  # [K]
    predicted_label: str
    predicted_labels: tuple[str, ...]
    encoded: EncodedText
    token_scores: np.ndarray | None = None  # [K, S] normalized
    raw_scores: np.ndarray | None = None  # [K, S]
    sentences: tuple[SentenceResult, ...] | None = None
    method: str = ""  # of the token scores
    completeness_gaps: np.ndarray | None = None  # [K], path methods
    steps: int = 0  # path methods: points per label (integrated gradients: its steps, as used)
    tolerance_missed: bool = False  # a completeness tolerance asked, not reached at the most steps
    seed: int | None = None  # drawn or asked (gradient_shap, faithfulness)
    faithfulness: FaithfulnessResult | None = None
    # A text read as windows (runtime/explanation/windows.py): its windows in order, and the
    # rule that aggregated their logits into the text's.
    windows: tuple[WindowResult, ...] = ()
    aggregation: str = ""


@dataclass(frozen=True)
class EntityResult:
    """One entity span's answer: ``result`` holds offsets into the original text."""

    span: MarkedSpan
    result: TextResult


@dataclass(frozen=True)
class EntitiesResult:
    """A text whose entity spans were classified (the text itself was not)."""

    text: str
    entities: tuple[EntityResult, ...]

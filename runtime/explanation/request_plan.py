"""The rows one request runs, and where each unit's outputs are among them.

A unit is a text classified whole, or one entity span of a text, marked. Its forward rows are
its full text (where its probabilities or sentence scores need the forward graph: not where an
fp32 token graph runs it, whose logits are the forward's) and one variant per sentence
removed, all of a request submitted as one work (one padded call unless the batch limits cut
it). Its token scores come from the path graph (path methods: runtime/explanation/methods.py)
or from the token graph the table picks (runtime/explanation/token_graphs.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gradlight.artifact.manifest import ATTRIBUTION_PATH, ATTRIBUTION_PATH_LABELS
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.feeds import Row, RowOutput
from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.explanation.ablation import encode_variants
from gradlight.runtime.explanation.entities import MarkedSpan
from gradlight.runtime.explanation.path_rows import PathText, path_graph, path_text
from gradlight.runtime.explanation.requests import AttributeOptions
from gradlight.runtime.explanation.sentences import SentenceSpan, split_sentences
from gradlight.runtime.explanation.token_graphs import LabelRows, TokenGraph, token_graph
from gradlight.runtime.explanation.windows import Windowing
from gradlight.wire.errors import RequestError
from gradlight.wire.methods import METHODS_BY_NAME, MethodSettings


@dataclass(frozen=True)
class ResolvedRequest:
    """A request checked and resolved: its units (text, its marked entity span or None), its
    options, token budget, label indices (``subset``: the request named them), method, seed
    (None where nothing is drawn) and how it reads texts longer than its window."""

    units: Sequence[tuple[str, MarkedSpan | None]]
    options: AttributeOptions
    max_length: int
    label_indices: tuple[int, ...]
    subset: bool
    choice: MethodSettings
    seed: int | None
    windowing: Windowing | None = None  # None: texts longer than the window are truncated
    text_of: tuple[int, ...] = ()  # unit -> its text's index in the request


@dataclass
class RequestPlan:
    """Rows of one request and where each unit's outputs will be."""

    encoded: list[EncodedText]
    forward: list[Row]
    attribution: list[Row]
    attribution_graph: str
    full_row: list[int | None]  # unit -> index of its full-text row in ``forward``
    variants: list[list[int | None]]  # unit -> per sentence, its variant's row in ``forward``
    spans: list[list[SentenceSpan]]  # unit -> its sentences, as reported
    # Path methods: unit -> its path rows, and the index of its first row in ``attribution``.
    path: list[PathText] = field(default_factory=list)
    path_start: list[int] = field(default_factory=list)
    # A token graph: the graph's entry and how each unit's rows hold the labels.
    token_graph: TokenGraph | None = None
    label_rows: LabelRows | None = None
    # Units whose probabilities come from a bf16 attribution graph's logits where its margin
    # keeps them within the gate of fp32's; the rest get a full-text forward row after it ran.
    checked: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class TokenScores:
    """One unit's token scores: raw ``[K, S]``, the logits its probabilities come from, and the
    path methods' completeness gaps ``[K]``, points per label and whether a completeness
    tolerance was missed at the most steps."""

    raw: np.ndarray
    logits: np.ndarray
    gaps: np.ndarray | None = None
    steps: int = 0
    tolerance_missed: bool = False


def plan_request(
    engine: Engine,
    max_batch_size: int,
    request: ResolvedRequest,
    encoded: list[EncodedText] | None = None,
) -> RequestPlan:
    """The rows of one request (``encoded``: its units, when already tokenized)."""
    texts = [text for text, _ in request.units]
    if encoded is None:
        encoded = engine.encode(texts, request.max_length)
    spans, removed, variants = sentence_variants(engine, request, encoded, request.max_length)
    for unit, (text, text_encoded) in enumerate(zip(texts, encoded, strict=True)):
        read = _sentences_read(text, text_encoded, removed[unit])
        spans[unit], variants[unit] = spans[unit][:read], variants[unit][:read]
    return plan_rows(engine, max_batch_size, request, encoded, variants, spans)


def plan_rows(
    engine: Engine,
    max_batch_size: int,
    request: ResolvedRequest,
    encoded: list[EncodedText],
    variants: Sequence[Sequence[EncodedText | None]],
    spans: list[list[SentenceSpan]],
) -> RequestPlan:
    """The rows of a request's units as ``encoded``, with each unit's sentence ``variants``
    (reported as ``spans``). A unit's full-text forward row is planned where its
    probabilities or sentence scores need it (``options.sentence_attributions``)."""
    options = request.options
    plan = RequestPlan(encoded, [], [], "", [], [], spans)
    if options.token_attributions and not request.choice.on_path:
        plan.token_graph = token_graph(engine.has_graph, request.subset, request.label_indices)
        plan.attribution_graph = plan.token_graph.key
    elif options.token_attributions:
        plan.attribution_graph = path_graph(engine.has_graph, len(request.label_indices))
    _plan_forward(plan, engine, variants, options.sentence_attributions)
    if not options.token_attributions:
        return plan
    if request.choice.on_path:
        _plan_path(plan, engine, request)
    else:
        _plan_token_graph(plan, engine, request.label_indices, max_batch_size)
    return plan


def sentence_variants(
    engine: Engine, request: ResolvedRequest, encoded: Sequence[EncodedText], budget: int
) -> tuple[list[list[SentenceSpan]], list[list[SentenceSpan]], list[list[EncodedText | None]]]:
    """Each unit's sentences as reported and as removed (``_sentences``), and per sentence
    the unit without it, tokenized at most ``budget`` tokens. A variant the model would see
    exactly as the full text (the sentence was cut off by truncation) is None: it scores
    exactly 0 and no row is run for it. Removing the sentence of an entity span leaves the
    marked span in place."""
    spans, removed = _sentences(request)
    texts = [text for text, _ in request.units]
    keep = [marked.kept if marked is not None else None for _, marked in request.units]
    variants = encode_variants(engine.encoder, texts, removed, encoded, budget, keep=keep)
    return spans, removed, variants


def _sentences(
    request: ResolvedRequest,
) -> tuple[list[list[SentenceSpan]], list[list[SentenceSpan]]]:
    """Each unit's sentences as reported (into the original text), and as removed (in the
    text the model reads)."""
    spans: list[list[SentenceSpan]] = []
    removed: list[list[SentenceSpan]] = []
    for text, marked in request.units:
        if not request.options.sentence_attributions:
            spans.append([])
            removed.append([])
        elif marked is None:
            spans.append(split_sentences(text))
            removed.append(spans[-1])
        else:
            original, in_marked = marked.sentences()
            spans.append(original)
            removed.append(in_marked)
    return spans, removed


def _sentences_read(text: str, encoded: EncodedText, spans: Sequence[SentenceSpan]) -> int:
    """How many of ``text``'s sentences ``spans`` (in order) the model reads a part of: all
    unless the text was truncated; the sentences after are not reported."""
    if not encoded.truncated:
        return len(spans)
    pairs = zip(encoded.offsets, encoded.special, strict=True)
    read = max((end for (_, end), special in pairs if not special), default=0)
    return sum(1 for span in spans if span.start < read)


def _plan_forward(
    plan: RequestPlan,
    engine: Engine,
    variants: Sequence[Sequence[EncodedText | None]],
    sentences: bool,
) -> None:
    """Each unit's forward rows. The full text's logits: an fp32 token graph's; a reduced
    precision's serve the probabilities where its margin allows (``checked``), never the
    sentence scores (a path graph's: its row at ``alpha`` 1); no attribution graph (or no
    margin known, or an fp32 path graph, whose gaps take f(x) from the forward), the forward
    graph's."""
    key = plan.attribution_graph
    margin = engine.logit_margin(key) if key else None
    fp32 = bool(key) and engine.runs_in_fp32(key)
    on_path = key in (ATTRIBUTION_PATH, ATTRIBUTION_PATH_LABELS)
    for unit, (text_encoded, text_variants) in enumerate(zip(plan.encoded, variants, strict=True)):
        needs_full = margin is None or (sentences and not fp32) or (on_path and fp32)
        plan.full_row.append(len(plan.forward) if needs_full else None)
        if not needs_full and margin:
            plan.checked.append(unit)
        if needs_full:  # a text and its variants are one unit: one padded call
            plan.forward.append(Row(text_encoded, unit=unit))
        rows: list[int | None] = [None] * len(text_variants)
        for i, variant in enumerate(text_variants):
            if variant is not None:
                rows[i] = len(plan.forward)
                plan.forward.append(Row(variant, unit=unit))
        plan.variants.append(rows)


def _plan_token_graph(
    plan: RequestPlan, engine: Engine, label_indices: tuple[int, ...], max_batch_size: int
) -> None:
    graph = plan.token_graph
    assert graph is not None
    plan.label_rows = LabelRows(len(engine.labels), graph.shares(label_indices, max_batch_size))
    plan.attribution = [row for text in plan.encoded for row in graph.rows(text, plan.label_rows)]


def check_path_rows(rows: int, choice: MethodSettings, limit: int) -> None:
    """Refuse a path request whose rows exceed ``limit`` (the queue's size)."""
    if rows > limit:
        field = METHODS_BY_NAME[choice.method].points or "method"  # the field counting them
        raise RequestError(
            field,
            f"the request needs up to {rows} path graph rows (labels x ({field} + 2) per text); "
            f"this server queues at most {limit} rows per model: ask fewer texts, labels "
            f"or {field}",
        )


def _plan_path(plan: RequestPlan, engine: Engine, request: ResolvedRequest) -> None:
    labels = len(engine.labels)
    hidden = int(engine.input_shape(plan.attribution_graph, "noise")[-1])
    shared = plan.attribution_graph != ATTRIBUTION_PATH
    own_text = not engine.runs_in_fp32(plan.attribution_graph)
    for unit, row in enumerate(plan.encoded):
        text = path_text(
            row,
            unit,
            request.label_indices,
            labels,
            request.choice,
            hidden,
            request.seed or 0,
            shared,
            own_text,
        )
        plan.path.append(text)
        plan.path_start.append(len(plan.attribution))
        plan.attribution.extend(text.first_rows())


def take_path_outputs(plan: RequestPlan, attribution: Sequence[RowOutput]) -> None:
    """Hand each unit's first path rows' outputs to its ``PathText``."""
    ends = [*plan.path_start[1:], len(attribution)]
    for text, start, end in zip(plan.path, plan.path_start, ends, strict=True):
        text.take(attribution[start:end])


def token_scores(
    index: int,
    plan: RequestPlan,
    forward: list[RowOutput],
    attribution: list[RowOutput],
) -> TokenScores:
    """Unit ``index``'s token scores from the request's rows' outputs."""
    if plan.token_graph is None:  # the path graphs
        text = plan.path[index]
        logits = path_text_logits(plan, forward, index)
        raw = text.raw()
        gaps, change = text.gaps(raw, logits)
        missed = bool(text.choice.tolerance) and not text.within(gaps, change)
        raw, gaps = raw.astype(np.float32), gaps.astype(np.float32)
        return TokenScores(raw, logits, gaps, text.steps, missed)
    assert plan.label_rows is not None
    count = len(plan.label_rows.shares)  # rows per unit
    rows = attribution[index * count : (index + 1) * count]
    raw, output = plan.token_graph.scores(rows, plan.label_rows)
    # predictions from the same pass as the token scores
    return TokenScores(np.asarray(raw, dtype=np.float32), output.logits)


def path_text_logits(plan: RequestPlan, forward: Sequence[RowOutput], index: int) -> np.ndarray:
    """Unit ``index``'s f(x) for its path rows: the forward graph's logits where its full-text
    row ran, else (a reduced precision's path graph) those of its row at ``alpha`` 1."""
    row = plan.full_row[index]
    if row is not None:
        return forward[row].logits
    own = plan.path[index].text
    assert own is not None
    return own.logits

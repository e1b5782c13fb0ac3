"""Conversion between protobuf messages and the runtime's own objects (no logic here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradlight.runtime.explanation.entities import EntityMarking, marking_from
from gradlight.runtime.explanation.faithfulness import FaithfulnessResult
from gradlight.runtime.explanation.methods import served_methods
from gradlight.runtime.explanation.requests import AttributeOptions
from gradlight.runtime.explanation.results import EntitiesResult, TextResult
from gradlight.runtime.serving.model_registry import ServedModel
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.wire.methods import FIELDS, Field


def attribute_options(request: pb.AttributeRequest) -> AttributeOptions:
    return AttributeOptions(
        max_length=request.max_length,
        token_attributions=request.token_attributions,
        sentence_attributions=request.sentence_attributions,
        labels=tuple(request.labels),
        raw_scores=request.raw_scores,
        long_texts=request.long_texts,
        window_stride=request.window_stride,
        aggregation=request.aggregation,
        **{field.name: _method_field(request, field) for field in FIELDS},
    )


def _method_field(request: pb.AttributeRequest, field: Field) -> Any:
    """A method or faithfulness field as sent; None for an unset ``optional`` one."""
    if field.optional and not request.HasField(field.name):
        return None
    return getattr(request, field.name)


def predict_options(request: pb.PredictRequest) -> AttributeOptions:
    return AttributeOptions(
        max_length=request.max_length,
        token_attributions=False,
        long_texts=request.long_texts,
        window_stride=request.window_stride,
        aggregation=request.aggregation,
    )


def entity_request(
    request: pb.PredictRequest | pb.AttributeRequest,
) -> tuple[list[list[tuple[int, int]]], EntityMarking]:
    """The request's entity spans per text, and how to mark them."""
    entities = [[(span.start, span.end) for span in item.spans] for item in request.entities]
    marking = request.entity_marking
    return entities, marking_from(
        marking.open if marking.HasField("open") else None,
        marking.close if marking.HasField("close") else None,
        marking.context_chars if marking.HasField("context_chars") else None,
    )


def text_result(result: TextResult | EntitiesResult, source: str | None = None) -> pb.TextResult:
    """``source``: the text that offsets index, when not ``result.text`` (entity spans)."""
    if isinstance(result, EntitiesResult):
        return _entities_result(result)
    encoded = result.encoded
    message = pb.TextResult(
        text=result.text,
        labels=result.labels,
        probabilities=result.probabilities.tolist(),
        predicted_label=result.predicted_label,
        predicted_labels=result.predicted_labels,
        truncated=encoded.truncated,
        num_tokens=len(encoded),
    )
    if result.token_scores is not None:
        _add_tokens(message, result)
    message.method = result.method
    if result.completeness_gaps is not None:
        message.completeness_gaps.extend(result.completeness_gaps.tolist())
    message.steps = result.steps
    message.tolerance_missed = result.tolerance_missed
    if result.seed is not None:
        message.seed = result.seed
    if result.faithfulness is not None:
        message.faithfulness.CopyFrom(_faithfulness(result.faithfulness))
    message.aggregation = result.aggregation
    for window in result.windows:
        message.windows.add(
            start=window.start,
            end=window.end,
            scored_start=window.scored_start,
            scored_end=window.scored_end,
            probabilities=window.probabilities.tolist(),
            predicted_label=window.predicted_label,
            completeness_gaps=(
                window.completeness_gaps.tolist() if window.completeness_gaps is not None else ()
            ),
        )
    if result.sentences is not None:
        source = result.text if source is None else source
        for sentence in result.sentences:
            message.sentences.add(
                sentence=source[sentence.start : sentence.end],
                start=sentence.start,
                end=sentence.end,
                scores=sentence.scores.tolist(),
            )
    return message


def _entities_result(result: EntitiesResult) -> pb.TextResult:
    message = pb.TextResult(text=result.text)
    for entity in result.entities:
        span = entity.span
        message.entities.add(
            start=span.start,
            end=span.end,
            context_start=span.context_start,
            context_end=span.context_end,
            marked_text=span.marked_text,
            result=text_result(entity.result, source=result.text),
        )
    return message


def _add_tokens(message: pb.TextResult, result: TextResult) -> None:
    encoded = result.encoded
    scores = result.token_scores.T.tolist()  # type: ignore[union-attr]  # [S][K]
    raw = result.raw_scores.T.tolist() if result.raw_scores is not None else None
    for position, token_id in enumerate(encoded.ids.tolist()):
        start, end = encoded.offsets[position]
        message.tokens.add(
            token_id=token_id,
            token=encoded.tokens[position],
            start=start,
            end=end,
            special=encoded.special[position],
            marker=encoded.is_marker(position),
            scores=scores[position],
            raw_scores=raw[position] if raw is not None else (),
        )


def _faithfulness(found: FaithfulnessResult) -> pb.Faithfulness:
    return pb.Faithfulness(
        fractions=found.fractions,
        comprehensiveness=found.comprehensiveness.tolist(),
        sufficiency=found.sufficiency.tolist(),
        random_comprehensiveness=found.random_comprehensiveness.tolist(),
        random_sufficiency=found.random_sufficiency.tolist(),
        words=found.words,
    )


def results(results: Sequence[TextResult | EntitiesResult]) -> list[pb.TextResult]:
    return [text_result(result) for result in results]


def model_info(model: ServedModel) -> pb.ModelInfo:
    manifest = model.engine.manifest
    return pb.ModelInfo(
        name=model.name,
        labels=manifest.labels,
        max_length=manifest.max_length,
        architecture=manifest.architecture,
        execution_provider=model.engine.execution_provider,
        problem_type=manifest.problem_type,
        model_type=manifest.model_type,
        revision=model.revision,
        precision=model.engine.precision,
        methods=served_methods(model.engine),
    )

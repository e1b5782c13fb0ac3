"""Conversion between protobuf messages and the runtime's own objects (no logic here)."""

from __future__ import annotations

from collections.abc import Sequence

from gradlight.runtime.attributor import TextResult
from gradlight.runtime.models import ServedModel
from gradlight.runtime.requests import AttributeOptions
from gradlight.v1 import gradlight_pb2 as pb


def attribute_options(request: pb.AttributeRequest) -> AttributeOptions:
    return AttributeOptions(
        max_length=request.max_length,
        token_attributions=request.token_attributions,
        sentence_attributions=request.sentence_attributions,
        labels=tuple(request.labels),
        raw_scores=request.raw_scores,
    )


def predict_options(request: pb.PredictRequest) -> AttributeOptions:
    return AttributeOptions(max_length=request.max_length, token_attributions=False)


def text_result(result: TextResult) -> pb.TextResult:
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
        scores = result.token_scores.T.tolist()  # [S][K]
        raw = result.raw_scores.T.tolist() if result.raw_scores is not None else None
        tokens = message.tokens
        for position, token_id in enumerate(encoded.ids.tolist()):
            start, end = encoded.offsets[position]
            tokens.add(
                token_id=token_id,
                token=encoded.tokens[position],
                start=start,
                end=end,
                special=encoded.special[position],
                scores=scores[position],
                raw_scores=raw[position] if raw is not None else (),
            )
    if result.sentences is not None:
        for sentence in result.sentences:
            message.sentences.add(
                sentence=result.text[sentence.start : sentence.end],
                start=sentence.start,
                end=sentence.end,
                scores=sentence.scores.tolist(),
            )
    return message


def results(results: Sequence[TextResult]) -> list[pb.TextResult]:
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
    )

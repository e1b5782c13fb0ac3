from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    INVALID_FIELD: _ClassVar[ErrorReason]
    MODEL_NOT_FOUND: _ClassVar[ErrorReason]
    QUEUE_FULL: _ClassVar[ErrorReason]
    RESPONSE_TOO_LARGE: _ClassVar[ErrorReason]
    SHUTTING_DOWN: _ClassVar[ErrorReason]
    UNAUTHENTICATED: _ClassVar[ErrorReason]
    INFERENCE_FAILED: _ClassVar[ErrorReason]
    INTERNAL_ERROR: _ClassVar[ErrorReason]
    REQUEST_TOO_LARGE: _ClassVar[ErrorReason]
    HOST_NOT_ALLOWED: _ClassVar[ErrorReason]
    NO_SUCH_ROUTE: _ClassVar[ErrorReason]
    RELOAD_FAILED: _ClassVar[ErrorReason]
ERROR_REASON_UNSPECIFIED: ErrorReason
INVALID_FIELD: ErrorReason
MODEL_NOT_FOUND: ErrorReason
QUEUE_FULL: ErrorReason
RESPONSE_TOO_LARGE: ErrorReason
SHUTTING_DOWN: ErrorReason
UNAUTHENTICATED: ErrorReason
INFERENCE_FAILED: ErrorReason
INTERNAL_ERROR: ErrorReason
REQUEST_TOO_LARGE: ErrorReason
HOST_NOT_ALLOWED: ErrorReason
NO_SUCH_ROUTE: ErrorReason
RELOAD_FAILED: ErrorReason

class PredictRequest(_message.Message):
    __slots__ = ("model", "texts", "max_length", "entities", "entity_marking", "long_texts", "window_stride", "aggregation")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    ENTITY_MARKING_FIELD_NUMBER: _ClassVar[int]
    LONG_TEXTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_STRIDE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    model: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    max_length: int
    entities: _containers.RepeatedCompositeFieldContainer[TextEntities]
    entity_marking: EntityMarking
    long_texts: str
    window_stride: int
    aggregation: str
    def __init__(self, model: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., max_length: _Optional[int] = ..., entities: _Optional[_Iterable[_Union[TextEntities, _Mapping]]] = ..., entity_marking: _Optional[_Union[EntityMarking, _Mapping]] = ..., long_texts: _Optional[str] = ..., window_stride: _Optional[int] = ..., aggregation: _Optional[str] = ...) -> None: ...

class AttributeRequest(_message.Message):
    __slots__ = ("model", "texts", "max_length", "token_attributions", "sentence_attributions", "labels", "raw_scores", "entities", "entity_marking", "method", "steps", "integration", "baseline", "samples", "stdev", "seed", "faithfulness", "removal", "completeness_tolerance", "long_texts", "window_stride", "aggregation")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    RAW_SCORES_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    ENTITY_MARKING_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    INTEGRATION_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    STDEV_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    FAITHFULNESS_FIELD_NUMBER: _ClassVar[int]
    REMOVAL_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    LONG_TEXTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_STRIDE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    model: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    max_length: int
    token_attributions: bool
    sentence_attributions: bool
    labels: _containers.RepeatedScalarFieldContainer[str]
    raw_scores: bool
    entities: _containers.RepeatedCompositeFieldContainer[TextEntities]
    entity_marking: EntityMarking
    method: str
    steps: int
    integration: str
    baseline: str
    samples: int
    stdev: float
    seed: int
    faithfulness: bool
    removal: str
    completeness_tolerance: float
    long_texts: str
    window_stride: int
    aggregation: str
    def __init__(self, model: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., max_length: _Optional[int] = ..., token_attributions: _Optional[bool] = ..., sentence_attributions: _Optional[bool] = ..., labels: _Optional[_Iterable[str]] = ..., raw_scores: _Optional[bool] = ..., entities: _Optional[_Iterable[_Union[TextEntities, _Mapping]]] = ..., entity_marking: _Optional[_Union[EntityMarking, _Mapping]] = ..., method: _Optional[str] = ..., steps: _Optional[int] = ..., integration: _Optional[str] = ..., baseline: _Optional[str] = ..., samples: _Optional[int] = ..., stdev: _Optional[float] = ..., seed: _Optional[int] = ..., faithfulness: _Optional[bool] = ..., removal: _Optional[str] = ..., completeness_tolerance: _Optional[float] = ..., long_texts: _Optional[str] = ..., window_stride: _Optional[int] = ..., aggregation: _Optional[str] = ...) -> None: ...

class TextEntities(_message.Message):
    __slots__ = ("spans",)
    SPANS_FIELD_NUMBER: _ClassVar[int]
    spans: _containers.RepeatedCompositeFieldContainer[EntitySpan]
    def __init__(self, spans: _Optional[_Iterable[_Union[EntitySpan, _Mapping]]] = ...) -> None: ...

class EntitySpan(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class EntityMarking(_message.Message):
    __slots__ = ("open", "close", "context_chars")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_CHARS_FIELD_NUMBER: _ClassVar[int]
    open: str
    close: str
    context_chars: int
    def __init__(self, open: _Optional[str] = ..., close: _Optional[str] = ..., context_chars: _Optional[int] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("model", "results")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    results: _containers.RepeatedCompositeFieldContainer[TextResult]
    def __init__(self, model: _Optional[str] = ..., results: _Optional[_Iterable[_Union[TextResult, _Mapping]]] = ...) -> None: ...

class AttributeResponse(_message.Message):
    __slots__ = ("model", "results")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    results: _containers.RepeatedCompositeFieldContainer[TextResult]
    def __init__(self, model: _Optional[str] = ..., results: _Optional[_Iterable[_Union[TextResult, _Mapping]]] = ...) -> None: ...

class TextResult(_message.Message):
    __slots__ = ("text", "labels", "probabilities", "predicted_label", "truncated", "tokens", "sentences", "predicted_labels", "num_tokens", "entities", "method", "completeness_gaps", "seed", "faithfulness", "steps", "tolerance_missed", "windows", "aggregation")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_LABEL_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_LABELS_FIELD_NUMBER: _ClassVar[int]
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_GAPS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    FAITHFULNESS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_MISSED_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    text: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    predicted_label: str
    truncated: bool
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    sentences: _containers.RepeatedCompositeFieldContainer[Sentence]
    predicted_labels: _containers.RepeatedScalarFieldContainer[str]
    num_tokens: int
    entities: _containers.RepeatedCompositeFieldContainer[EntityResult]
    method: str
    completeness_gaps: _containers.RepeatedScalarFieldContainer[float]
    seed: int
    faithfulness: Faithfulness
    steps: int
    tolerance_missed: bool
    windows: _containers.RepeatedCompositeFieldContainer[Window]
    aggregation: str
    def __init__(self, text: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., probabilities: _Optional[_Iterable[float]] = ..., predicted_label: _Optional[str] = ..., truncated: _Optional[bool] = ..., tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ..., sentences: _Optional[_Iterable[_Union[Sentence, _Mapping]]] = ..., predicted_labels: _Optional[_Iterable[str]] = ..., num_tokens: _Optional[int] = ..., entities: _Optional[_Iterable[_Union[EntityResult, _Mapping]]] = ..., method: _Optional[str] = ..., completeness_gaps: _Optional[_Iterable[float]] = ..., seed: _Optional[int] = ..., faithfulness: _Optional[_Union[Faithfulness, _Mapping]] = ..., steps: _Optional[int] = ..., tolerance_missed: _Optional[bool] = ..., windows: _Optional[_Iterable[_Union[Window, _Mapping]]] = ..., aggregation: _Optional[str] = ...) -> None: ...

class Window(_message.Message):
    __slots__ = ("start", "end", "scored_start", "scored_end", "probabilities", "predicted_label", "completeness_gaps")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SCORED_START_FIELD_NUMBER: _ClassVar[int]
    SCORED_END_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_LABEL_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_GAPS_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    scored_start: int
    scored_end: int
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    predicted_label: str
    completeness_gaps: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., scored_start: _Optional[int] = ..., scored_end: _Optional[int] = ..., probabilities: _Optional[_Iterable[float]] = ..., predicted_label: _Optional[str] = ..., completeness_gaps: _Optional[_Iterable[float]] = ...) -> None: ...

class Faithfulness(_message.Message):
    __slots__ = ("fractions", "comprehensiveness", "sufficiency", "random_comprehensiveness", "random_sufficiency", "words")
    FRACTIONS_FIELD_NUMBER: _ClassVar[int]
    COMPREHENSIVENESS_FIELD_NUMBER: _ClassVar[int]
    SUFFICIENCY_FIELD_NUMBER: _ClassVar[int]
    RANDOM_COMPREHENSIVENESS_FIELD_NUMBER: _ClassVar[int]
    RANDOM_SUFFICIENCY_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    fractions: _containers.RepeatedScalarFieldContainer[float]
    comprehensiveness: _containers.RepeatedScalarFieldContainer[float]
    sufficiency: _containers.RepeatedScalarFieldContainer[float]
    random_comprehensiveness: _containers.RepeatedScalarFieldContainer[float]
    random_sufficiency: _containers.RepeatedScalarFieldContainer[float]
    words: int
    def __init__(self, fractions: _Optional[_Iterable[float]] = ..., comprehensiveness: _Optional[_Iterable[float]] = ..., sufficiency: _Optional[_Iterable[float]] = ..., random_comprehensiveness: _Optional[_Iterable[float]] = ..., random_sufficiency: _Optional[_Iterable[float]] = ..., words: _Optional[int] = ...) -> None: ...

class EntityResult(_message.Message):
    __slots__ = ("start", "end", "context_start", "context_end", "marked_text", "result")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_START_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_END_FIELD_NUMBER: _ClassVar[int]
    MARKED_TEXT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    context_start: int
    context_end: int
    marked_text: str
    result: TextResult
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., context_start: _Optional[int] = ..., context_end: _Optional[int] = ..., marked_text: _Optional[str] = ..., result: _Optional[_Union[TextResult, _Mapping]] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("token_id", "token", "start", "end", "special", "scores", "raw_scores", "marker")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SPECIAL_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    RAW_SCORES_FIELD_NUMBER: _ClassVar[int]
    MARKER_FIELD_NUMBER: _ClassVar[int]
    token_id: int
    token: str
    start: int
    end: int
    special: bool
    scores: _containers.RepeatedScalarFieldContainer[float]
    raw_scores: _containers.RepeatedScalarFieldContainer[float]
    marker: bool
    def __init__(self, token_id: _Optional[int] = ..., token: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., special: _Optional[bool] = ..., scores: _Optional[_Iterable[float]] = ..., raw_scores: _Optional[_Iterable[float]] = ..., marker: _Optional[bool] = ...) -> None: ...

class Sentence(_message.Message):
    __slots__ = ("sentence", "start", "end", "scores")
    SENTENCE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    sentence: str
    start: int
    end: int
    scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, sentence: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., scores: _Optional[_Iterable[float]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "labels", "max_length", "architecture", "execution_provider", "problem_type", "model_type", "revision", "precision", "methods")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    max_length: int
    architecture: str
    execution_provider: str
    problem_type: str
    model_type: str
    revision: str
    precision: str
    methods: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., max_length: _Optional[int] = ..., architecture: _Optional[str] = ..., execution_provider: _Optional[str] = ..., problem_type: _Optional[str] = ..., model_type: _Optional[str] = ..., revision: _Optional[str] = ..., precision: _Optional[str] = ..., methods: _Optional[_Iterable[str]] = ...) -> None: ...

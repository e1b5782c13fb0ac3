from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictRequest(_message.Message):
    __slots__ = ("model", "texts", "max_length")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    model: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    max_length: int
    def __init__(self, model: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., max_length: _Optional[int] = ...) -> None: ...

class AttributeRequest(_message.Message):
    __slots__ = ("model", "texts", "max_length", "token_attributions", "sentence_attributions", "labels", "raw_scores")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    RAW_SCORES_FIELD_NUMBER: _ClassVar[int]
    model: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    max_length: int
    token_attributions: bool
    sentence_attributions: bool
    labels: _containers.RepeatedScalarFieldContainer[str]
    raw_scores: bool
    def __init__(self, model: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., max_length: _Optional[int] = ..., token_attributions: _Optional[bool] = ..., sentence_attributions: _Optional[bool] = ..., labels: _Optional[_Iterable[str]] = ..., raw_scores: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("text", "labels", "probabilities", "predicted_label", "truncated", "tokens", "sentences", "predicted_labels", "num_tokens")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_LABEL_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_LABELS_FIELD_NUMBER: _ClassVar[int]
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    text: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    predicted_label: str
    truncated: bool
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    sentences: _containers.RepeatedCompositeFieldContainer[Sentence]
    predicted_labels: _containers.RepeatedScalarFieldContainer[str]
    num_tokens: int
    def __init__(self, text: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., probabilities: _Optional[_Iterable[float]] = ..., predicted_label: _Optional[str] = ..., truncated: _Optional[bool] = ..., tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ..., sentences: _Optional[_Iterable[_Union[Sentence, _Mapping]]] = ..., predicted_labels: _Optional[_Iterable[str]] = ..., num_tokens: _Optional[int] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("token_id", "token", "start", "end", "special", "scores", "raw_scores")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SPECIAL_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    RAW_SCORES_FIELD_NUMBER: _ClassVar[int]
    token_id: int
    token: str
    start: int
    end: int
    special: bool
    scores: _containers.RepeatedScalarFieldContainer[float]
    raw_scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, token_id: _Optional[int] = ..., token: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., special: _Optional[bool] = ..., scores: _Optional[_Iterable[float]] = ..., raw_scores: _Optional[_Iterable[float]] = ...) -> None: ...

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
    __slots__ = ("name", "labels", "max_length", "architecture", "execution_provider", "problem_type", "model_type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    max_length: int
    architecture: str
    execution_provider: str
    problem_type: str
    model_type: str
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., max_length: _Optional[int] = ..., architecture: _Optional[str] = ..., execution_provider: _Optional[str] = ..., problem_type: _Optional[str] = ..., model_type: _Optional[str] = ...) -> None: ...

"""Load a local Hugging Face sequence classifier and describe it for export."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gradlight.artifact.manifest import WHOLE_TEXT
from gradlight.artifact.model_spec import MULTI_LABEL, SINGLE_LABEL, ModelSpec
from gradlight.export.architectures import Architecture, architecture_for
from gradlight.export.errors import ExportError

log = logging.getLogger(__name__)

_TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class LoadedClassifier:
    model: Any  # transformers.PreTrainedModel, eval mode, frozen, eager attention
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    spec: ModelSpec
    architecture: Architecture
    # (start, end) token ids of the entity markers a model reads (a tagged cnlpt task); the
    # validation batches then mark a span in some rows.
    entity_markers: tuple[int, int] | None = None
    # How a text becomes the tokenizer's input (artifact/manifest.py: PRE_TOKENIZATIONS), as
    # the model was trained; the manifest records it for the runtime.
    pre_tokenization: str = WHOLE_TEXT


def read_spec(model_dir: Path) -> ModelSpec:
    """Check that ``model_dir`` holds a sequence classifier gradlight can explain; describe it."""
    from transformers import AutoConfig

    if not model_dir.is_dir():
        raise ExportError(f"model directory {model_dir} does not exist")
    if not (model_dir / "config.json").is_file():
        raise ExportError(
            f"{model_dir} has no config.json: pass a directory written by "
            "`model.save_pretrained(...)` (hub names are not downloaded)"
        )
    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    model_type = config.model_type
    architectures = list(config.architectures or [])
    classifiers = [name for name in architectures if name.endswith("ForSequenceClassification")]
    if not classifiers:
        raise ExportError(
            f"{model_dir} is not a sequence classifier (config.architectures = {architectures}); "
            "gradlight explains *ForSequenceClassification models: load the encoder with "
            "AutoModelForSequenceClassification, fine-tune it, and save_pretrained it"
        )
    num_labels = int(config.num_labels)
    if num_labels < 2:
        raise ExportError(
            f"{model_dir} has num_labels={num_labels} (a regression head); gradlight explains "
            "classifiers with 2 or more labels"
        )
    problem_type = config.problem_type or SINGLE_LABEL
    if problem_type not in (SINGLE_LABEL, MULTI_LABEL):
        raise ExportError(
            f"{model_dir}: problem_type {problem_type!r} is not supported; use "
            f"{SINGLE_LABEL!r} or {MULTI_LABEL!r}"
        )
    labels = tuple(str(config.id2label[i]) for i in range(num_labels))
    if len(set(labels)) != len(labels):
        raise ExportError(f"{model_dir}: label names in config.id2label repeat: {list(labels)}")
    pad = getattr(config, "pad_token_id", None)
    pad = int(pad if pad is not None else 0)
    if getattr(config, "max_position_embeddings", None) is None:
        raise ExportError(
            f"{model_dir}: config.json has no max_position_embeddings; set it to the longest "
            "input (in tokens) the model reads"
        )
    architecture = architecture_for(model_type)
    return ModelSpec(
        model_type=model_type,
        architecture=classifiers[0],
        labels=labels,
        problem_type=problem_type,
        max_length=architecture.max_length(config, pad),
        pad_token_id=pad,
        model_inputs=architecture.model_inputs(config),
    )


def load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if not (model_dir / _TOKENIZER_FILE).is_file():
        raise ExportError(
            f"{model_dir} has no {_TOKENIZER_FILE}: save the fast tokenizer next to the model "
            "(`AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(MODEL_DIR)`); "
            "the gradlight runtime tokenizes with the `tokenizers` library"
        )
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ExportError(f"{model_dir}: the tokenizer must be a fast tokenizer")
    # A tokenizer.json saved with fixed padding or truncation (cnlpt's are) would pad every
    # text; gradlight pads batches itself and truncates at the request's max_length.
    tokenizer.backend_tokenizer.no_padding()
    tokenizer.backend_tokenizer.no_truncation()
    return tokenizer


def load_classifier(model_dir: Path | str) -> LoadedClassifier:
    """Load the model (fp32, eager attention, eval mode, frozen) and its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model_dir = Path(model_dir)
    spec = read_spec(model_dir)
    tokenizer = load_tokenizer(model_dir)
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != spec.pad_token_id:
        log.warning(
            "tokenizer pad id %s differs from config.pad_token_id %s; using the tokenizer's",
            tokenizer.pad_token_id,
            spec.pad_token_id,
        )
        spec = replace(spec, pad_token_id=int(tokenizer.pad_token_id))
    tokenizer_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_max, int) and 0 < tokenizer_max < spec.max_length:
        spec = replace(spec, max_length=tokenizer_max)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, local_files_only=True, attn_implementation="eager", dtype=torch.float32
    )
    model.eval()
    model.requires_grad_(False)
    return LoadedClassifier(model, tokenizer, spec, architecture_for(spec.model_type))

"""cnlp_transformers checkpoints: one encoder, several task heads, read without importing cnlpt.

cnlpt (PyPI ``cnlp-transformers``) saves multi-task models: a Hugging Face encoder
(``encoder.*`` weights, its config inside the checkpoint's ``encoder_config``) and, per task,
a feature extractor (``feature_extractors.<task>.dense``) and a classifier
(``classifiers.<task>.out_proj``). For a classification task, in evaluation mode:

    logits = out_proj(tanh(dense(r)))

where ``r`` is, in "cls" mode, the hidden state of the first token of layer ``encoder_layer``
and, in "tagged" mode, the mean of the hidden states from the first ``<e>`` to the first
``</e>``, both markers included. Both layouts are read: cnlpt 0.8's ``ProjectionModel``
(``model_type`` "cnlpt.proj", tasks in ``_tasks``, the mode in ``tokens`` or
``classification_mode``) and the older ``CnlpModelForClassification`` (``model_type``
"cnlpt", tasks in ``finetuning_task`` and ``label_dictionary``, the mode in ``tokens``).

Each classification task becomes a classifier gradlight exports like any other (its own
artifact); tagging and relations tasks are not explained (docs/cnlpt.md).

Text becomes tokens as cnlpt's preprocessing makes them (``cnlpt.data.preprocess``,
``_tokenize_batch``): split at every space (``str(text).split(" ")``) and tokenized as
pre-tokenized words (``is_split_into_words=True``, the tokenizer loaded with
``add_prefix_space=True``), unless the model reads characters (``character_level``: the raw
string). The task's artifact records it (``pre_tokenization``) and the runtime tokenizes so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gradlight.artifact.manifest import SPLIT_AT_SPACES, WHOLE_TEXT
from gradlight.artifact.model_spec import SINGLE_LABEL, ModelSpec
from gradlight.export.architectures import architecture_for
from gradlight.export.errors import ExportError
from gradlight.export.model_loading import LoadedClassifier, load_tokenizer

MODEL_TYPES = ("cnlpt.proj", "cnlpt")
CLASSIFICATION = "classification"
START_MARKER, END_MARKER = "<e>", "</e>"


@dataclass(frozen=True)
class CnlptTask:
    name: str
    kind: str  # classification, tagging or relations
    labels: tuple[str, ...]


@dataclass(frozen=True)
class CnlptCheckpoint:
    """What a cnlpt checkpoint's config says: its tasks, how the heads read the encoder, and
    the encoder's own config."""

    path: Path
    model_type: str
    architecture: str
    tasks: tuple[CnlptTask, ...]
    tagged: bool
    encoder_layer: int
    encoder_config: dict[str, Any]
    character_level: bool = False

    @property
    def pre_tokenization(self) -> str:
        """How cnlpt turns a text into the tokenizer's input for this model."""
        return WHOLE_TEXT if self.character_level else SPLIT_AT_SPACES

    @property
    def classification_tasks(self) -> tuple[CnlptTask, ...]:
        return tuple(task for task in self.tasks if task.kind == CLASSIFICATION)

    def refused(self) -> dict[str, str]:
        """Tasks gradlight does not explain, with why."""
        return {
            task.name: (
                f"a {task.kind} task (one answer per token or token pair): gradlight explains "
                "classification tasks, one answer per text"
            )
            for task in self.tasks
            if task.kind != CLASSIFICATION
        }

    def task(self, name: str) -> CnlptTask:
        for task in self.classification_tasks:
            if task.name == name:
                return task
        known = [task.name for task in self.classification_tasks]
        raise ExportError(f"{self.path}: no classification task {name!r}; it has {known}")


def is_cnlpt_checkpoint(model_dir: Path) -> bool:
    config = Path(model_dir) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") in MODEL_TYPES
    except (OSError, ValueError, AttributeError):
        return False  # read_spec reports an unreadable config


def read_checkpoint(model_dir: Path) -> CnlptCheckpoint:
    try:
        return _read_checkpoint(
            model_dir, json.loads((Path(model_dir) / "config.json").read_text())
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(
            f"{model_dir}: config.json is not a cnlp_transformers checkpoint's config gradlight "
            f"can read ({type(exc).__name__}: {exc})"
        ) from None


def _read_checkpoint(model_dir: Path, config: dict[str, Any]) -> CnlptCheckpoint:
    if config.get("use_prior_tasks"):
        raise ExportError(
            f"{model_dir}: use_prior_tasks is set (heads read earlier tasks' logits); gradlight "
            "exports cnlpt models whose tasks each read the encoder alone"
        )
    if config["model_type"] == "cnlpt":  # the layout before cnlpt 0.8
        tagger, relations = config.get("tagger") or {}, config.get("relations") or {}
        kinds = dict.fromkeys(config["finetuning_task"], CLASSIFICATION)
        kinds.update({name: "relations" for name, on in relations.items() if on})
        kinds.update({name: "tagging" for name, on in tagger.items() if on})
        tasks = tuple(
            CnlptTask(name, kinds[name], tuple(map(str, config["label_dictionary"][name])))
            for name in config["finetuning_task"]
        )
        layer = int(config.get("layer", -1))
    else:
        tasks = tuple(
            CnlptTask(entry["name"], entry["type"], tuple(str(label) for label in entry["labels"]))
            for entry in sorted(config["_tasks"], key=lambda entry: entry["index"])
        )
        layer = int(config.get("encoder_layer", -1))
    mode = config.get("classification_mode") or ("tagged" if config.get("tokens") else "cls")
    if mode not in ("cls", "tagged"):
        raise ExportError(f"{model_dir}: unknown cnlpt classification_mode {mode!r}")
    encoder_config = dict(config.get("encoder_config") or {})
    if "model_type" not in encoder_config:
        raise ExportError(
            f"{model_dir}: config.json has no encoder_config with a model_type; gradlight reads "
            "the encoder's config from the checkpoint (nothing is downloaded)"
        )
    return CnlptCheckpoint(
        path=Path(model_dir),
        model_type=config["model_type"],
        architecture=(config.get("architectures") or ["ProjectionModel"])[0],
        tasks=tasks,
        tagged=mode == "tagged",
        encoder_layer=layer,
        encoder_config=encoder_config,
        character_level=bool(config.get("character_level")),
    )


def _encoder_config(checkpoint: CnlptCheckpoint) -> Any:
    from transformers import AutoConfig

    fields = dict(checkpoint.encoder_config)
    return AutoConfig.for_model(fields.pop("model_type"), **fields)


def task_spec(checkpoint: CnlptCheckpoint, task: CnlptTask, pad_token_id: int) -> ModelSpec:
    config = _encoder_config(checkpoint)
    architecture = architecture_for(config.model_type)
    return ModelSpec(
        model_type=checkpoint.model_type,
        architecture=f"{checkpoint.architecture}[{task.name}]",
        labels=task.labels,
        problem_type=SINGLE_LABEL,
        max_length=architecture.max_length(config, pad_token_id),
        pad_token_id=pad_token_id,
        model_inputs=architecture.model_inputs(config),
    )


def read_task_spec(model_dir: Path, task_name: str) -> ModelSpec:
    checkpoint = read_checkpoint(model_dir)
    tokenizer = load_tokenizer(Path(model_dir))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return task_spec(checkpoint, checkpoint.task(task_name), int(pad))


def load_task(model_dir: Path, task_name: str) -> LoadedClassifier:
    """The task as a ``LoadedClassifier`` (export/model_loading.py): the encoder and that
    task's head in one module whose forward returns ``.logits`` like a HF classifier's."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    checkpoint = read_checkpoint(model_dir)
    task = checkpoint.task(task_name)
    tokenizer = load_tokenizer(Path(model_dir))
    markers = None
    if checkpoint.tagged:
        markers = tuple(tokenizer.convert_tokens_to_ids(m) for m in (START_MARKER, END_MARKER))
        if tokenizer.unk_token_id in markers:
            raise ExportError(
                f"{model_dir}: a tagged cnlpt model, but its tokenizer has no {START_MARKER} / "
                f"{END_MARKER} tokens"
            )
    weights_file = Path(model_dir) / "model.safetensors"
    if not weights_file.is_file():
        raise ExportError(f"{model_dir} has no model.safetensors (cnlpt saves its weights there)")
    weights = load_file(str(weights_file))
    config = _encoder_config(checkpoint)
    config.vocab_size = int(weights["encoder.embeddings.word_embeddings.weight"].shape[0])
    encoder = AutoModel.from_config(config, attn_implementation="eager")
    _load(encoder, weights, "encoder.", model_dir)
    hidden = config.hidden_size
    dense = torch.nn.Linear(hidden, hidden)
    _load(dense, weights, f"feature_extractors.{task.name}.dense.", model_dir)
    out_proj = torch.nn.Linear(hidden, len(task.labels))
    _load(out_proj, weights, f"classifiers.{task.name}.out_proj.", model_dir)
    model = CnlptTaskClassifier(encoder, dense, out_proj, checkpoint.encoder_layer, markers)
    model.eval()
    model.requires_grad_(False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    spec = task_spec(checkpoint, task, int(pad))
    tokenizer_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_max, int) and 0 < tokenizer_max < spec.max_length:
        spec = replace(spec, max_length=tokenizer_max)
    # its heads may read other tokens than the first (entity markers)
    architecture = replace(
        architecture_for(config.model_type), fuse_as=None, first_token_head=False
    )
    return LoadedClassifier(
        model,
        tokenizer,
        spec,
        architecture,
        entity_markers=markers,
        pre_tokenization=checkpoint.pre_tokenization,
    )


def _load(
    module: torch.nn.Module, weights: dict[str, Tensor], prefix: str, model_dir: Path
) -> None:
    own = {key[len(prefix) :]: value for key, value in weights.items() if key.startswith(prefix)}
    missing, unexpected = module.load_state_dict(own, strict=False)
    # HF encoders may hold buffers (position ids) a checkpoint need not store.
    missing = [key for key in missing if not key.endswith("position_ids")]
    if missing or unexpected:
        raise ExportError(
            f"{model_dir}: the weights under {prefix!r} do not fit the model config.json "
            f"describes (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )


@dataclass(frozen=True)
class _Output:
    logits: Tensor


class CnlptTaskClassifier(torch.nn.Module):
    """A cnlpt task as a sequence classifier: the encoder, then the task's head."""

    def __init__(
        self,
        encoder: torch.nn.Module,
        dense: torch.nn.Linear,
        out_proj: torch.nn.Linear,
        encoder_layer: int,
        markers: tuple[int, int] | None,
    ) -> None:
        super().__init__()
        self.encoder, self.dense, self.out_proj = encoder, dense, out_proj
        self.encoder_layer, self.markers = encoder_layer, markers

    @property
    def config(self) -> Any:
        return self.encoder.config

    @property
    def base_model(self) -> Any:
        return self.encoder

    def get_input_embeddings(self) -> Any:
        return self.encoder.get_input_embeddings()

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> _Output:
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        outputs = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=True,
            return_dict=True,
            **kwargs,
        )
        hidden = outputs.hidden_states[self.encoder_layer]
        if self.markers is None:
            pooled = hidden[:, 0, :]
        else:
            weights = self.entity_span(input_ids, attention_mask).to(hidden.dtype)
            pooled = (weights.unsqueeze(-1) * hidden).sum(1) / weights.sum(1, keepdim=True)
        return _Output(self.out_proj(torch.tanh(self.dense(pooled))))

    def entity_span(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """1 from the first ``<e>`` to the first ``</e>`` (both included), as cnlpt marks the
        entity; a text without ``<e>`` reads all its tokens (cnlpt would average its padding
        too, so its answer would change with the padded length)."""
        assert self.markers is not None
        start, end = self.markers
        started = torch.cumsum((input_ids == start).to(torch.int64), dim=1) > 0
        is_end = (input_ids == end).to(torch.int64)
        ended_before = (torch.cumsum(is_end, dim=1) - is_end) > 0
        span = (started & ~ended_before).to(torch.float32) * attention_mask.to(torch.float32)
        marked = span.amax(dim=1, keepdim=True)  # 1 where the text has an <e>, else 0
        return marked * span + (1 - marked) * attention_mask.to(torch.float32)

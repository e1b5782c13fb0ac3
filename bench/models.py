"""The models a benchmark runs: a classifier with L labels, and its exported artifact (cached).

Timing does not depend on the head's values, so a model with another label count is the same
encoder with a new, seeded head. ``save_bert_base`` builds a BERT-base-sized classifier from
a config (random weights, MiniLM's uncased WordPiece tokenizer) for timing a larger model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from gradlight.artifact.errors import ArtifactError
from gradlight.artifact.manifest import ATTRIBUTION_PATH, load_manifest
from gradlight.export.errors import ExportError

Printer = Callable[[str], None]
SOURCE_STAMP = "bench-source.json"


def label_count(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if "id2label" in config:
        return len(config["id2label"])
    return int(config.get("num_labels", 2))


def reheaded(model_dir: Path, labels: int, out_dir: Path, seed: int = 0) -> Path:
    """``model_dir``'s encoder with a new seeded ``labels``-way head, saved in ``out_dir``
    (kept and reused: the same seed gives the same weights)."""
    if (out_dir / "config.json").is_file():
        return out_dir
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    names = [f"label_{i}" for i in range(labels)]
    torch.manual_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized head": that is the point
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir,
            local_files_only=True,
            num_labels=labels,
            id2label=dict(enumerate(names)),
            label2id={name: i for i, name in enumerate(names)},
            ignore_mismatched_sizes=True,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    AutoTokenizer.from_pretrained(model_dir, local_files_only=True).save_pretrained(partial)
    partial.rename(out_dir)
    return out_dir


def save_bert_base(
    out_dir: Path | str, labels: int = 2, seed: int = 0, tokenizer_dir: Path | str | None = None
) -> Path:
    """A BERT-base-sized classifier (12 layers, hidden 768, 110M parameters) with random
    weights from ``seed`` and MiniLM-L6's tokenizer (the same 30,522-token uncased vocabulary;
    ``tokenizer_dir``: a saved copy of it, where the MiniLM package is not installed)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from gradlight.demo.minilm import minilm_encoder_dir

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    names = [f"label_{i}" for i in range(labels)]
    config = BertConfig(
        num_labels=labels,
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
    )
    BertForSequenceClassification(config).save_pretrained(out_dir)
    source = tokenizer_dir if tokenizer_dir is not None else minilm_encoder_dir()
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _fingerprint(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(model_dir.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def cached_artifact(
    model_dir: Path,
    artifact_dir: Path,
    printer: Printer,
    fp16: bool = False,
    precisions: Sequence[str] = (),
    path_graph: bool = False,
) -> Path:
    """``model_dir`` exported (and validated) to ``artifact_dir``; reused when the artifact was
    made from the same model files, its checksums still verify, it has the graphs of every
    reduced precision asked for (``precisions``, and fp16 when ``fp16``) and the path graph
    when ``path_graph`` (integrated gradients; the rest of the bench does not use it, and
    tracing it is a third of an export)."""
    from gradlight.export.options import ExportOptions
    from gradlight.export.pipeline import export_model

    wanted = tuple(dict.fromkeys([*precisions, *(["fp16"] if fp16 else [])]))
    fingerprint = _fingerprint(model_dir)
    stamp = artifact_dir / SOURCE_STAMP
    try:
        manifest = load_manifest(artifact_dir)
        has_path = ATTRIBUTION_PATH in manifest.graphs
        stamped = json.loads(stamp.read_text(encoding="utf-8")).get("fingerprint")
        if (
            stamped == fingerprint
            and set(wanted) <= set(manifest.precisions)
            and (has_path or not path_graph)
        ):
            printer(f"reusing the artifact in {artifact_dir} (checksums verified)")
            return artifact_dir
    except (ArtifactError, OSError, ValueError):
        pass
    printer(f"exporting {model_dir} to {artifact_dir}")
    options = ExportOptions(overwrite=True, precisions=wanted, path_graph=path_graph)
    manifest = export_model(model_dir, artifact_dir, options, printer)
    if not manifest.validation.get("passed"):
        raise ExportError(f"the export of {model_dir} did not validate; see {artifact_dir}")
    stamp.write_text(json.dumps({"fingerprint": fingerprint}) + "\n", encoding="utf-8")
    return artifact_dir

"""The artifact's manifest: what the export wrote, read back without torch.

An artifact directory holds ONNX graphs, the tokenizer files and ``manifest.json``. The
manifest records every file's sha256, so a tampered or truncated artifact is refused when it
is loaded, with a message that names the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gradlight.runtime.errors import ArtifactError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TOKENIZER_DIR = "tokenizer"

# Graph keys in ``Manifest.graphs``.
FORWARD = "forward"
"""Logits only. Inputs: the model inputs. Outputs: ``logits [B, L]``."""
ATTRIBUTION = "attribution"
"""All labels at once. Outputs: ``logits [B, L]``, ``scores [B, L, S]``. Only for small L."""
ATTRIBUTION_COTANGENT = "attribution_cotangent"
"""One weighted mix of labels per row. Extra input ``cotangent [B, L]``; outputs
``logits [B, L]``, ``scores [B, S]`` = input x gradient of ``sum_c cotangent[c] * logits[c]``."""

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"


@dataclass(frozen=True)
class GraphInfo:
    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    format_version: int
    model_type: str
    architecture: str
    labels: tuple[str, ...]
    problem_type: str
    max_length: int
    pad_token_id: int
    model_inputs: tuple[str, ...]
    opset: int
    graphs: Mapping[str, GraphInfo]
    tokenizer_dir: str
    tools: Mapping[str, str]
    files: Mapping[str, str]
    validation: Mapping[str, Any]
    export: Mapping[str, Any]
    # The same graphs in fp16 (``gradlight export --fp16``), validated against fp32; none when
    # the artifact was exported without it.
    fp16_graphs: Mapping[str, GraphInfo] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_artifact_files(artifact_dir: Path) -> dict[str, str]:
    """sha256 of every file under ``artifact_dir`` except the manifest, by relative path."""
    hashes = {}
    for path in sorted(artifact_dir.rglob("*")):
        if path.is_file() and path.name != MANIFEST_NAME:
            hashes[path.relative_to(artifact_dir).as_posix()] = sha256_file(path)
    return hashes


def write_manifest(artifact_dir: Path, manifest: Manifest) -> Path:
    path = artifact_dir / MANIFEST_NAME
    path.write_text(manifest.to_json(), encoding="utf-8")
    return path


def load_manifest(artifact_dir: Path | str, *, verify_files: bool = True) -> Manifest:
    """Read ``manifest.json``; with ``verify_files`` also check every file's sha256."""
    artifact_dir = Path(artifact_dir)
    path = artifact_dir / MANIFEST_NAME
    if not artifact_dir.is_dir():
        raise ArtifactError(f"artifact directory {artifact_dir} does not exist")
    if not path.is_file():
        raise ArtifactError(
            f"{path} is missing: {artifact_dir} is not a gradlight artifact "
            "(create one with `gradlight export MODEL_DIR OUT_DIR`)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: unknown manifest format_version {version!r}; this gradlight reads "
            f"version {FORMAT_VERSION}: re-export the model with this gradlight"
        )
    try:

        def graph_infos(listed: dict[str, Any]) -> dict[str, GraphInfo]:
            return {
                key: GraphInfo(
                    file=value["file"],
                    inputs=tuple(value["inputs"]),
                    outputs=tuple(value["outputs"]),
                    details=dict(value.get("details", {})),
                )
                for key, value in listed.items()
            }

        graphs = graph_infos(data["graphs"])
        fp16_graphs = graph_infos(data.get("fp16_graphs", {}))
        manifest = Manifest(
            format_version=version,
            model_type=data["model_type"],
            architecture=data["architecture"],
            labels=tuple(_listed(data["labels"], "labels")),
            problem_type=data["problem_type"],
            max_length=int(data["max_length"]),
            pad_token_id=int(data["pad_token_id"]),
            model_inputs=tuple(data["model_inputs"]),
            opset=int(data["opset"]),
            graphs=graphs,
            tokenizer_dir=data["tokenizer_dir"],
            tools=dict(data["tools"]),
            files=dict(data["files"]),
            validation=dict(data["validation"]),
            export=dict(data["export"]),
            fp16_graphs=fp16_graphs,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path} is incomplete or malformed: {exc!r}") from exc
    _check_fields(path, manifest)
    if FORWARD not in manifest.graphs or ATTRIBUTION_COTANGENT not in manifest.graphs:
        raise ArtifactError(
            f"{path} must name a {FORWARD!r} and an {ATTRIBUTION_COTANGENT!r} graph"
        )
    if verify_files:
        verify_artifact_files(artifact_dir, manifest)
    return manifest


def _listed(value: Any, name: str) -> list[Any]:
    """A JSON list as it is (a string or an object would pass through tuple() silently)."""
    if not isinstance(value, list):
        raise TypeError(f"{name} must be a JSON list, got {type(value).__name__}")
    return value


def _check_fields(path: Path, manifest: Manifest) -> None:
    labels = manifest.labels
    if len(labels) < 2 or not all(isinstance(label, str) and label.strip() for label in labels):
        raise ArtifactError(
            f"{path}: labels must be a list of 2 or more non-blank strings, got {labels!r}"
        )
    if len(set(labels)) != len(labels):
        twice = sorted({label for label in labels if labels.count(label) > 1})
        raise ArtifactError(f"{path}: labels must be distinct; listed twice: {twice}")
    if manifest.problem_type not in (SINGLE_LABEL, MULTI_LABEL):
        raise ArtifactError(
            f"{path}: unknown problem_type {manifest.problem_type!r}; expected {SINGLE_LABEL!r} "
            f"or {MULTI_LABEL!r}"
        )
    if manifest.max_length < 2:
        raise ArtifactError(f"{path}: max_length must be at least 2, got {manifest.max_length}")


def verify_artifact_files(artifact_dir: Path, manifest: Manifest) -> None:
    """Raise ``ArtifactError`` naming the first file that is missing, changed or unlisted."""
    root = artifact_dir.resolve()
    for relative in manifest.files:
        if not (root / relative).resolve().is_relative_to(root):
            raise ArtifactError(f"manifest file entry {relative!r} points outside {artifact_dir}")
    for graph in (*manifest.graphs.values(), *manifest.fp16_graphs.values()):
        if graph.file not in manifest.files:
            raise ArtifactError(f"graph file {graph.file} is not listed in the manifest's files")
    for relative, expected in manifest.files.items():
        path = artifact_dir / relative
        if not path.is_file():
            raise ArtifactError(f"{path} is missing from the artifact; re-export the model")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(
                f"{path} does not match its sha256 in {MANIFEST_NAME} "
                f"(expected {expected[:12]}..., found {actual[:12]}...): the file was changed "
                "or truncated after export; re-export the model"
            )

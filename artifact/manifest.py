"""The artifact's manifest: what the export wrote, read back without torch.

An artifact directory holds ONNX graphs, the tokenizer files and ``manifest.json``. The
manifest records every file's sha256, so a tampered or truncated artifact is refused when it
is loaded, with a message that names the file.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

from gradlight.artifact.errors import ArtifactError
from gradlight.artifact.model_spec import ModelSpec, model_spec_fields

FORMAT_VERSION = 2
"""2: other precisions' graphs under ``precisions`` (1 had ``fp16_graphs``; still read)."""
READABLE_VERSIONS = (1, 2)
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
ATTRIBUTION_LABELS = "attribution_labels"
"""Several mixes of labels per row, from one forward pass. Extra input ``cotangent [B, K, L]``
(K dynamic); outputs ``logits [B, L]``, ``scores [B, K, S]``: row b's ``scores[b, k]`` are the
cotangent graph's for ``cotangent[b, k]``. Absent from artifacts exported before it (the
runtime then runs one cotangent row per label)."""
ATTRIBUTION_PATH = "attribution_path"
"""One point of an integration path per row (integrated gradients, GradientSHAP). Extra inputs
``cotangent [B, L]``, ``alpha [B]``, ``keep [B, S]``, ``fill [B]``, ``noise [B, S, H]``; outputs
``logits [B, L]`` at the point, ``scores [B, S]`` (export/attribution.py: path_fn)."""
ATTRIBUTION_PATH_LABELS = "attribution_path_labels"
"""Points of an integration path for several labels, one forward per point. Extra inputs
``alpha [B]``, ``keep [B, S]``, ``fill [B]``, ``noise [B, S, H]``, ``cotangent [B, K, L]`` (K
dynamic); outputs ``logits [B, L]`` at the point, ``scores [B, K, S]``: row b's
``scores[b, k]`` are the path graph's for ``cotangent[b, k]``. Absent from artifacts exported
before it, or where it cannot be traced (the runtime then runs one path row per label)."""
REQUIRED_GRAPHS = (FORWARD, ATTRIBUTION_COTANGENT)
PLAIN_REQUEST_GRAPHS = (ATTRIBUTION, ATTRIBUTION_LABELS, ATTRIBUTION_COTANGENT)
"""The graphs that can answer a request for every label's input x gradient, best first."""


def plain_request_graph(graphs: Mapping[str, Any]) -> str:
    """The graph a request without labels or a method runs, among ``graphs`` (keys)."""
    return next(key for key in PLAIN_REQUEST_GRAPHS if key in graphs)


FP32 = "fp32"
"""The precision of ``Manifest.graphs``; others are in ``Manifest.precisions``."""

# How a text becomes the tokenizer's input (``Manifest.pre_tokenization``).
WHOLE_TEXT = "none"
"""The text goes to the tokenizer as one string (a manifest without the field means this)."""
SPLIT_AT_SPACES = "split_at_spaces"
"""The text is split at every space, U+0020 alone (Python's ``text.split(" ")``: a run of spaces
leaves empty words, tabs and newlines stay inside words), and the words go to the tokenizer as
pre-tokenized input, as cnlp_transformers tokenizes for training and prediction."""
PRE_TOKENIZATIONS = (WHOLE_TEXT, SPLIT_AT_SPACES)


@dataclass(frozen=True)
class GraphInfo:
    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest(ModelSpec):
    """The model (``ModelSpec``'s fields, stored at the top level of ``manifest.json``), its
    graphs by key, and how the artifact was made and checked."""

    format_version: int
    opset: int
    graphs: Mapping[str, GraphInfo]
    tokenizer_dir: str
    tools: Mapping[str, str]
    files: Mapping[str, str]
    validation: Mapping[str, Any]
    export: Mapping[str, Any]
    # The same graphs in other precisions (``gradlight export --fp16``: ``"fp16"``), validated
    # against fp32; empty when the artifact was exported without them.
    precisions: Mapping[str, Mapping[str, GraphInfo]] = field(default_factory=dict)
    # How a text becomes the tokenizer's input: one of PRE_TOKENIZATIONS.
    pre_tokenization: str = WHOLE_TEXT

    def graphs_at(self, precision: str) -> Mapping[str, GraphInfo]:
        """The graphs of ``precision`` (``fp32``, or one of ``precisions``); a graph a precision
        left out (bf16 keeps only those that passed its gates) in fp32."""
        if precision == FP32:
            return self.graphs
        if precision not in self.precisions:
            raise ArtifactError(
                f"the artifact has no {precision} graphs: export it again with --{precision}, "
                "or serve it in fp32"
            )
        return {**self.graphs, **self.precisions[precision]}

    def all_graphs(self) -> list[GraphInfo]:
        return [*self.graphs.values(), *(g for p in self.precisions.values() for g in p.values())]

    def paths(self) -> list[tuple[str, Any]]:
        """Every path the manifest names, relative to the artifact directory, with the field
        that names it: the tokenizer's folder, the graph files of every precision, and the
        files whose checksums it holds."""
        found: list[tuple[str, Any]] = [("tokenizer_dir", self.tokenizer_dir)]
        found += [(f"graphs.{key}.file", graph.file) for key, graph in self.graphs.items()]
        for precision, graphs in self.precisions.items():
            listed = "fp16_graphs" if self.format_version == 1 else f"precisions.{precision}"
            found += [(f"{listed}.{key}.file", graph.file) for key, graph in graphs.items()]
        found += [("files entry", relative) for relative in self.files]
        return found

    def path_problems(self, artifact_dir: Path | str | None = None) -> list[str]:
        """Each path of ``paths()`` that is not inside the artifact (not a relative path, or
        climbing out with ``..``; with ``artifact_dir``, also one that leads out through a
        symbolic link), then what to do (empty when all are inside)."""
        root = Path(artifact_dir).resolve() if artifact_dir is not None else None
        found = []
        for name, value in self.paths():
            if problem := _path_problem(value, root):
                found.append(f"{name} {value!r} {problem}")
        if found:
            linked = any(_LINKED in problem for problem in found)
            found.append(_INSIDE + (f", {_COPY_LINKED}" if linked else ""))
        return found

    def problems(self, artifact_dir: Path | str | None = None) -> list[str]:
        """What makes this manifest unusable (empty when it is fine): the model's problems
        (``ModelSpec.problems``), an unknown ``pre_tokenization`` and its paths'
        (``path_problems``)."""
        found = [*super().problems()]
        if self.pre_tokenization not in PRE_TOKENIZATIONS:
            found.append(
                f"unknown pre_tokenization {self.pre_tokenization!r}; this gradlight knows "
                f"{', '.join(map(repr, PRE_TOKENIZATIONS))}: serve it with the gradlight that "
                "exported it, or re-export the model with this one"
            )
        return [*found, *self.path_problems(artifact_dir)]

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
    data = _read_json(artifact_dir, path)
    try:
        manifest = _manifest_from(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArtifactError(f"{path} is incomplete or malformed: {exc!r}") from exc
    problems = manifest.problems(artifact_dir)
    if problems:
        raise ArtifactError(f"{path}: {'; '.join(problems)}")
    missing = [key for key in REQUIRED_GRAPHS if key not in manifest.graphs]
    if missing:
        raise ArtifactError(
            f"{path} must name a {FORWARD!r} and an {ATTRIBUTION_COTANGENT!r} graph"
        )
    if verify_files:
        verify_artifact_files(artifact_dir, manifest)
    return manifest


def _read_json(artifact_dir: Path, path: Path) -> dict[str, Any]:
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
    if version not in READABLE_VERSIONS:
        raise ArtifactError(
            f"{path}: unknown manifest format_version {version!r}; this gradlight reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))}: re-export the model with this "
            "gradlight"
        )
    return data


def _graph_infos(listed: dict[str, Any]) -> dict[str, GraphInfo]:
    return {
        key: GraphInfo(
            file=value["file"],
            inputs=tuple(value["inputs"]),
            outputs=tuple(value["outputs"]),
            details=dict(value.get("details", {})),
        )
        for key, value in listed.items()
    }


def _manifest_from(data: dict[str, Any]) -> Manifest:
    if data["format_version"] == 1:  # version 1 held its fp16 graphs apart
        precisions = {"fp16": data["fp16_graphs"]} if data.get("fp16_graphs") else {}
    else:
        precisions = data.get("precisions", {})
    return Manifest(
        **model_spec_fields(data),
        format_version=int(data["format_version"]),
        opset=int(data["opset"]),
        graphs=_graph_infos(data["graphs"]),
        tokenizer_dir=data["tokenizer_dir"],
        tools=dict(data["tools"]),
        files=dict(data["files"]),
        validation=dict(data["validation"]),
        export=dict(data["export"]),
        precisions={name: _graph_infos(graphs) for name, graphs in precisions.items()},
        pre_tokenization=data.get("pre_tokenization", WHOLE_TEXT),
    )


_INSIDE = (
    "every path in the manifest must be relative to the artifact directory and stay inside "
    "it: re-export the model"
)
_LINKED = "through a symbolic link"
_COPY_LINKED = "or put a copy of what the link points to in its place"


def _path_problem(value: Any, root: Path | None) -> str | None:
    """Why ``value`` does not name a path inside the artifact ``root`` (None: it does; without
    ``root``, only what the path itself says)."""
    if not isinstance(value, str) or not value:
        return "is not a path"
    if "\0" in value:
        return "holds a NUL character"
    if value.startswith(("/", "\\")) or PureWindowsPath(value).drive:
        return "points outside the artifact (an absolute path)"
    normalized = posixpath.normpath(value.replace("\\", "/"))
    if normalized == ".." or normalized.startswith("../"):
        return "points outside the artifact ('..' climbs out of it)"
    if root is not None:
        try:
            resolved = (root / value).resolve()
        except (OSError, RuntimeError) as exc:  # a loop of symbolic links, say
            return f"cannot be followed to a file ({exc})"
        if not resolved.is_relative_to(root):
            return f"points outside the artifact {_LINKED} (to {resolved})"
    return None


def verify_artifact_files(artifact_dir: Path, manifest: Manifest) -> None:
    """Raise ``ArtifactError`` naming the paths that lead out of the artifact
    (``Manifest.path_problems``), or else the first file that is missing, changed or unlisted
    (a graph file the manifest's ``files`` leave out)."""
    if problems := manifest.path_problems(artifact_dir):
        raise ArtifactError(f"{artifact_dir / MANIFEST_NAME}: {'; '.join(problems)}")
    for graph in manifest.all_graphs():
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

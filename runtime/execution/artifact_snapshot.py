"""A served model's private, verified copy of its artifact. No torch.

An engine never reads its artifact's directory after it has copied it: at load, the manifest and
the files the engine can read (the graphs of the served precision, with the fp32 graphs a bf16
graph falls back to, their external-data files and the tokenizer) are copied into a directory
of this process's own (``mkdtemp``: mode 0700; each copy read-only), and each copy's sha256,
computed over the bytes written, is checked against the manifest copied in the same pass. Every
session, the tokenizer and each graph loaded on its first call, hours later, read the copy. So
a file of the artifact truncated, overwritten in place, or replaced by renaming another artifact
into place changes nothing a model serves (ONNX Runtime and OpenVINO map the weights file: a
mapped file truncated under them kills the process with SIGBUS) and never mixes two models'
files; the next reload verifies the new files and is refused if they do not match.

What it costs (docs/reliability.md, "Artifacts changed on disk"): one copy of the served files on
the disk holding the snapshot directory (``EngineSettings.snapshot_dir``; default the system's
temporary directory), removed when the engine is closed or garbage collected, or at exit; the
copy's time at load (the sha256 pass reads the files once either way). Memory: the same as
serving the artifact's own files (the runtimes map the copy as they would map the original),
except on a tmpfs, where the copy's pages are memory.

Snapshots left by a process that died without removing them are removed by the next snapshot
taken in the same directory: each holds a lock file its process keeps locked (``flock``) while
it lives.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Iterable
from pathlib import Path

from gradlight.artifact.errors import ArtifactError
from gradlight.artifact.manifest import MANIFEST_NAME, GraphInfo, Manifest, load_manifest
from gradlight.runtime.execution.shared_initializers import external_data_files

logger = logging.getLogger(__name__)

PREFIX = "gradlight-snapshot-"
OWNER = ".owner"  # the lock file its process holds
TOKENIZER_FILE = "tokenizer.json"  # what the engine's tokenizer reads
ABANDONED_AFTER_S = 60  # a snapshot this recent may still be getting its lock
_BLOCK = 1 << 20


class ArtifactSnapshot:
    """The copy of the artifact in ``source``: ``directory`` holds it, ``manifest`` is the
    copied manifest's, ``revision`` the start of its sha256. ``add_graphs`` copies what serving
    those graphs reads; ``close`` removes the copy."""

    def __init__(self, source: Path, root: Path | None = None) -> None:
        self.source = Path(source)
        self.source_files = source_files(self.source)  # before anything is copied
        load_manifest(self.source, verify_files=False)  # its errors name the artifact's files
        parent = Path(root) if root is not None else Path(tempfile.gettempdir())
        try:
            parent.mkdir(parents=True, exist_ok=True)
            _remove_abandoned(parent)
            self.directory = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        except OSError as exc:
            raise ArtifactError(
                f"could not make a snapshot directory in {parent}: {exc}; set --snapshot-dir "
                "to a writable directory"
            ) from exc
        owner = os.open(self.directory / OWNER, os.O_CREAT | os.O_WRONLY, 0o600)
        fcntl.flock(owner, fcntl.LOCK_EX)
        self._finalizer = weakref.finalize(self, _remove, self.directory, owner)
        self.copied: dict[str, int] = {}  # relative path -> bytes
        try:
            digest = self._copy(MANIFEST_NAME)
            self.revision = digest[:16]
            self.manifest: Manifest = load_manifest(self.directory, verify_files=False)
            tokenizer = f"{self.manifest.tokenizer_dir}/"
            read = {f"{tokenizer}{TOKENIZER_FILE}"}
            read.update(name for name in self.manifest.files if name.startswith(tokenizer))
            for relative in sorted(read):
                self._verify_listed(relative, self._copy(relative))
        except BaseException:
            self.close()
            raise

    @property
    def bytes(self) -> int:
        """The bytes copied so far."""
        return sum(self.copied.values())

    def add_graphs(self, graphs: Iterable[GraphInfo]) -> None:
        """Copy ``graphs``' files and the external-data files they name, each verified."""
        try:
            for graph in graphs:
                if graph.file in self.copied:
                    continue
                self._verify_listed(graph.file, self._copy(graph.file))
                for location in sorted(external_data_files(self.directory / graph.file)):
                    relative = (Path(graph.file).parent / location).as_posix()
                    if relative not in self.copied:
                        self._verify_listed(relative, self._copy(relative))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Remove the copy (sessions that mapped its files keep their mappings)."""
        self._finalizer()

    def _copy(self, relative: str) -> str:
        """Copy ``source/relative`` into the snapshot; the sha256 of the bytes written."""
        root = self.source.resolve()
        path = self.source / relative
        if not path.resolve().is_relative_to(root):
            raise ArtifactError(f"{relative!r} points outside the artifact {self.source}")
        if not path.is_file():
            raise ArtifactError(f"{path} is missing from the artifact; re-export the model")
        target = self.directory / relative
        digest = hashlib.sha256()
        size = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with path.open("rb") as reader, target.open("xb") as writer:
                while block := reader.read(_BLOCK):
                    digest.update(block)
                    writer.write(block)
                    size += len(block)
            target.chmod(0o400)
        except OSError as exc:
            raise ArtifactError(
                f"could not copy {path} into the snapshot directory {self.directory.parent}: "
                f"{exc}; free space there or set --snapshot-dir elsewhere"
            ) from exc
        self.copied[relative] = size
        return digest.hexdigest()

    def _verify_listed(self, relative: str, digest: str) -> None:
        expected = self.manifest.files.get(relative)
        if expected is None:
            raise ArtifactError(
                f"{self.source / relative} is read by the model but not listed in "
                f"{MANIFEST_NAME}'s files: re-export the model"
            )
        if digest != expected:
            raise ArtifactError(
                f"{self.source / relative} does not match its sha256 in {MANIFEST_NAME} "
                f"(expected {expected[:12]}..., found {digest[:12]}...): the file was changed "
                "or truncated after export; re-export the model"
            )


def source_files(artifact_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file of ``artifact_dir`` with its size and modification time (what a reload
    compares, with the manifest's sha256, to tell whether the artifact changed)."""
    try:
        files = sorted(path for path in artifact_dir.rglob("*") if path.is_file())
        return tuple(
            (path.relative_to(artifact_dir).as_posix(), stat.st_size, stat.st_mtime_ns)
            for path in files
            if (stat := path.stat())
        )
    except OSError:
        return ()  # being replaced: the copy's checks say what is wrong


def _remove(directory: Path, owner: int) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    os.close(owner)


def _remove_abandoned(parent: Path) -> None:
    """Remove the snapshots in ``parent`` whose process is gone (their lock is free)."""
    now = time.time()
    for directory in parent.glob(f"{PREFIX}*"):
        try:
            if now - directory.stat().st_mtime < ABANDONED_AFTER_S:
                continue
            owner = os.open(directory / OWNER, os.O_WRONLY)
        except OSError:
            continue  # being made, or not one of ours
        try:
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its process lives
        finally:
            os.close(owner)
        shutil.rmtree(directory, ignore_errors=True)
        logger.info("removed %s: a snapshot its process left behind", directory)

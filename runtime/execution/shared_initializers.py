"""One copy of an artifact's weights for all its ONNX Runtime sessions. No torch, no onnx.

An artifact's graphs keep their large initializers in one external-data file (``weights.bin``,
see ``export/shared_weights.py``): each initializer names a location, an offset and a length
there. ``SharedInitializers`` maps each such file once, wraps each distinct range of it in one
``OrtValue`` (a view, no copy) and gives every session these values through
``SessionOptions.add_initializer``; ONNX Runtime reads the caller's buffer as it is
(``add_external_initializers`` copies the data into each session in 1.32).

Where the copies of weights come from (ONNX Runtime 1.32, CPU provider): ONNX Runtime maps the
external data itself (per tensor, per session, so a page touched by two sessions counts twice
in the resident set), pre-packs each MatMul/Gemm weight per session (the container that shares
pre-packed weights between sessions is in the C API only, not in Python's) and constant-folds
each ``Transpose(weight)`` of the attribution graphs into a transposed copy. Sharing the raw
weights therefore saves memory only with pre-packing off and constant folding left out (the
Transposes then fuse into ``FusedMatMul(transB=1)``; the other optimizations of
``ORT_ENABLE_ALL`` still run), for a few percent more CPU time. MatMuls on weights not
pre-packed also round differently (outputs move in the 7th digit). With pre-packing on, sharing
costs memory instead (the raw weights stay mapped beside the packed ones). So it is an engine
setting (``EngineSettings.share_weights``, ``gradlight serve --share-weights``), off by default:
memory for a few percent of speed and the 7th digit. The sizes, peaks and times:
docs/engine-settings.md, "Memory".

The graphs are read with a small protobuf reader (only the initializers' names, types, dims
and external-data entries), because the serving path does not depend on the ``onnx`` package.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

# TensorProto.DataType -> numpy (little-endian, as ONNX stores raw and external data); types
# numpy has no plain dtype for (bfloat16, float8, int4, ...) are left to ONNX Runtime.
_DTYPES = {
    1: np.dtype("<f4"),
    2: np.dtype("u1"),
    3: np.dtype("i1"),
    4: np.dtype("<u2"),
    5: np.dtype("<i2"),
    6: np.dtype("<i4"),
    7: np.dtype("<i8"),
    9: np.dtype("?"),
    10: np.dtype("<f2"),
    11: np.dtype("<f8"),
    12: np.dtype("<u4"),
    13: np.dtype("<u8"),
}
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL

_NO_PREPACKING = {"session.disable_prepacking": "1"}
_DISABLED_OPTIMIZERS = ("ConstantFolding",)


@dataclass(frozen=True)
class ExternalTensor:
    """One initializer whose data lies in an external file: where, and what it holds."""

    name: str
    location: Path
    offset: int
    length: int
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def range(self) -> tuple[Path, int, int]:
        return self.location, self.offset, self.length


class SharedInitializers:
    """``enabled``: whether ``configure`` gives sessions the shared weights, with pre-packing
    off and constant folding left out, without which sharing saves nothing.

    The external-data initializers of an artifact's graphs, each file mapped once and each
    distinct ``(file, offset, length)`` range held by one buffer that every session uses.

    ``add_to(graph_path, options)`` gives a session's options the graph's initializers; the
    buffers live as long as this object, which must outlive the sessions (the engine keeps it).
    A graph with its weights embedded gets nothing and loads as before.
    """

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self._files: dict[Path, np.ndarray] = {}
        self._values: dict[tuple[Path, int, int, str, tuple[int, ...]], ort.OrtValue] = {}
        self.given: dict[Path, tuple[str, ...]] = {}

    @property
    def ranges(self) -> frozenset[tuple[Path, int, int]]:
        """The distinct ``(file, offset, length)`` ranges given to sessions so far."""
        return frozenset(key[:3] for key in self._values)

    @property
    def buffers(self) -> dict[Path, np.ndarray]:
        """Each external-data file's bytes, mapped once: the memory every value points into."""
        return dict(self._files)

    @property
    def values(self) -> dict[tuple[Path, int, int, str, tuple[int, ...]], ort.OrtValue]:
        """The shared values by range, dtype and shape (one range seen as two types or shapes
        gives two values over the same bytes)."""
        return dict(self._values)

    def add_to(self, graph_path: Path, options: ort.SessionOptions) -> int:
        """Give ``options`` the shared values of ``graph_path``'s external initializers;
        returns how many."""
        tensors = external_tensors(graph_path)
        if not tensors:
            return 0
        for tensor in tensors:
            options.add_initializer(tensor.name, self._value(tensor))
        self.given[graph_path] = tuple(t.name for t in tensors)
        return len(tensors)

    def configure(self, graph_path: Path, options: ort.SessionOptions) -> list[str]:
        """When enabled, set ``options`` up so the session of ``graph_path`` reads
        the shared weights and copies none (pre-packing off); returns the optimizers to leave
        out (``InferenceSession(..., disabled_optimizers=...)``). Without, changes nothing."""
        if not self.enabled:
            return []
        for key, value in _NO_PREPACKING.items():
            options.add_session_config_entry(key, value)
        self.add_to(graph_path, options)
        return list(_DISABLED_OPTIMIZERS)

    def _value(self, tensor: ExternalTensor) -> ort.OrtValue:
        key = (*tensor.range, tensor.dtype.str, tensor.shape)
        if key not in self._values:
            size = tensor.location.stat().st_size
            if tensor.offset + tensor.length > size:
                raise ValueError(
                    f"initializer {tensor.name!r} lies at {tensor.offset}+{tensor.length} but "
                    f"{tensor.location.name} has {size} bytes: the artifact is incomplete, "
                    "re-export the model"
                )
            view = self._file(tensor.location)[tensor.offset : tensor.offset + tensor.length]
            array = view.view(tensor.dtype).reshape(tensor.shape)
            self._values[key] = ort.OrtValue.ortvalue_from_numpy(array)  # no copy on CPU
        return self._values[key]

    def _file(self, location: Path) -> np.ndarray:
        if location not in self._files:
            # Mapped copy-on-write, as ONNX Runtime maps external data itself (but once for
            # all sessions, where it maps each tensor for each session): pages are read on
            # first use and stay shared with the page cache and other processes.
            self._files[location] = np.memmap(location, dtype=np.uint8, mode="c")
        return self._files[location]


def external_tensors(graph_path: Path) -> list[ExternalTensor]:
    """The main graph's initializers stored in external files that ``graph_path``'s directory
    holds, with a dtype numpy has; tensors of other types or elsewhere are left to ONNX
    Runtime (it reads them itself, or refuses them)."""
    directory = graph_path.parent.resolve()
    model = memoryview(graph_path.read_bytes())
    found = []
    for graph in _submessages(model, 7):  # ModelProto.graph
        for initializer in _submessages(graph, 5):  # GraphProto.initializer
            tensor = _external_tensor(initializer, directory)
            if tensor is not None:
                found.append(tensor)
    return found


def external_data_files(graph_path: Path) -> set[str]:
    """The ``location`` of every external-data file the main graph's initializers name, as
    written in the graph (relative to its directory), whatever their type."""
    model = memoryview(graph_path.read_bytes())
    found = set()
    for graph in _submessages(model, 7):  # ModelProto.graph
        for initializer in _submessages(graph, 5):  # GraphProto.initializer
            for entry in _submessages(initializer, 13):  # TensorProto.external_data
                fields = {f: bytes(v).decode("utf-8") for f, v in _fields(entry)}
                if fields.get(1) == "location":
                    found.add(fields.get(2, ""))
    return found


def _external_tensor(message: memoryview, directory: Path) -> ExternalTensor | None:
    dims: list[int] = []
    data_type = 0
    name = ""
    location = _EXTERNAL - 1
    entries: dict[str, str] = {}
    for field, value in _fields(message):
        if field == 1:  # dims: packed or not
            if isinstance(value, memoryview):
                dims.extend(_packed_varints(value))
            else:
                dims.append(value)
        elif field == 2:
            data_type = value
        elif field == 8:
            name = bytes(value).decode("utf-8")
        elif field == 13:  # external_data: StringStringEntryProto (key = 1, value = 2)
            entry = {f: bytes(v).decode("utf-8") for f, v in _fields(value)}
            entries[entry.get(1, "")] = entry.get(2, "")
        elif field == 14:
            location = value
    dtype = _DTYPES.get(data_type)
    if location != _EXTERNAL or dtype is None or "location" not in entries:
        return None
    path = (directory / entries["location"]).resolve()
    if not path.is_relative_to(directory):
        return None
    length = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if int(entries.get("length", length)) != length:
        return None  # inconsistent: ONNX Runtime says how
    return ExternalTensor(
        name=name,
        location=path,
        offset=int(entries.get("offset", 0)),
        length=length,
        dtype=dtype,
        shape=tuple(dims),
    )


# ---- a minimal protobuf wire-format reader (https://protobuf.dev/programming-guides/encoding/)


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """``(field number, value)`` of each field: an int for varints and fixed-size fields, a
    memoryview of the bytes for length-delimited ones."""
    position, end = 0, len(data)
    while position < end:
        tag, position = _varint(data, position)
        wire = tag & 7
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 2:
            size, position = _varint(data, position)
            value, position = data[position : position + size], position + size
        elif wire == 1:
            value, position = int.from_bytes(data[position : position + 8], "little"), position + 8
        elif wire == 5:
            value, position = int.from_bytes(data[position : position + 4], "little"), position + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}: not an ONNX model?")
        yield tag >> 3, value


def _submessages(data: memoryview, number: int) -> Iterator[memoryview]:
    for field, value in _fields(data):
        if field == number and isinstance(value, memoryview):
            yield value


def _packed_varints(data: memoryview) -> Iterator[int]:
    position = 0
    while position < len(data):
        value, position = _varint(data, position)
        yield value

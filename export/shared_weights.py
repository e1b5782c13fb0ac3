"""Store the weights the graphs have in common once, in one external-data file.

Each exported graph embeds its own copy of the model's weights (90 MB for MiniLM-L6), so three
graphs would triple the artifact. This moves every large initializer into ``weights.bin``,
deduplicated by content, and points each graph at its offset there (ONNX external data), so
the artifact holds the weights once whatever the number of graphs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import onnx
from onnx import TensorProto, numpy_helper
from onnx.external_data_helper import set_external_data

WEIGHTS_FILE = "weights.bin"
_MIN_BYTES = 1024
_ALIGNMENT = 64


def share_weights(
    artifact_dir: Path, graph_files: Sequence[str], weights_file: str = WEIGHTS_FILE
) -> dict[str, float]:
    """Rewrite ``graph_files`` (relative to ``artifact_dir``) to use one shared weights file.

    Returns the weights file's size and how many bytes the deduplication saved, in MB.
    """
    offsets: dict[str, tuple[int, int]] = {}
    referenced = 0
    weights_path = artifact_dir / weights_file
    with weights_path.open("wb") as weights:
        for name in graph_files:
            model = onnx.load(str(artifact_dir / name))
            for tensor in model.graph.initializer:
                array = numpy_helper.to_array(tensor)
                data = array.tobytes()
                if len(data) < _MIN_BYTES:
                    continue
                referenced += len(data)
                key = hashlib.sha256(data).hexdigest()
                if key not in offsets:
                    weights.write(b"\0" * (-weights.tell() % _ALIGNMENT))
                    offsets[key] = (weights.tell(), len(data))
                    weights.write(data)
                offset, length = offsets[key]
                external = numpy_helper.from_array(array, tensor.name)
                set_external_data(external, location=weights_file, offset=offset, length=length)
                external.ClearField("raw_data")
                external.data_location = TensorProto.EXTERNAL
                tensor.CopyFrom(external)
            onnx.save(model, str(artifact_dir / name))
    stored = weights_path.stat().st_size
    return {
        "weights_mb": round(stored / 1e6, 3),
        "saved_by_sharing_mb": round((referenced - stored) / 1e6, 3),
    }

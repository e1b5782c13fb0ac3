"""The engine on ONNX Runtime's CUDA provider: IOBinding and fp16 against the CPU provider's
fp32. These need onnxruntime-gpu and an NVIDIA GPU; elsewhere they skip, saying so.
bench/gpu/run.sh runs them on a GPU machine."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from serving import ServerThread

from gradlight.bench import engine_calls
from gradlight.client import Client
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.sessions import CUDA
from gradlight.runtime.settings import EngineSettings

pytestmark = pytest.mark.skipif(
    CUDA not in ort.get_available_providers(),
    reason="no CUDAExecutionProvider in this onnxruntime (bench/gpu/run.sh runs these on a GPU)",
)

TEXTS = [
    "The patient denies chest pain. No evidence of pneumonia on the chest x-ray.",
    "Follow up in two weeks.",
]


def _normalized(scores, mask):
    from gradlight.runtime.execution.scores import normalize_scores

    return normalize_scores(scores, mask)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_with_io_binding_agrees_with_the_cpu(precision, fp16_artifact):
    artifact = fp16_artifact
    cpu = Engine(artifact, EngineSettings(provider="cpu"))
    gpu = Engine(artifact, EngineSettings(provider="cuda", precision=precision))
    assert gpu.execution_provider == CUDA and gpu.io_binding
    if precision == "fp32":  # fp32 means fp32: no TF32 in the matrix products
        assert gpu.graph_set.sessions["forward"].get_provider_options()[CUDA]["use_tf32"] == "0"
    batch = cpu.batch(cpu.encode(TEXTS, 64))
    tolerance = {"fp32": 1e-3, "fp16": 0.05}[precision]
    np.testing.assert_allclose(
        engine_calls.forward(gpu, batch), engine_calls.forward(cpu, batch), atol=tolerance
    )
    _, cpu_scores = engine_calls.attribute_all(cpu, batch)
    _, gpu_scores = engine_calls.attribute_all(gpu, batch)
    mask = batch.attention_mask
    difference = np.abs(_normalized(gpu_scores, mask) - _normalized(cpu_scores, mask)).max()
    assert difference <= tolerance
    with ServerThread({"bert": gpu}) as server, Client(server.address) as client:
        (info,) = client.list_models().models
        assert info.execution_provider == CUDA
        assert client.attribute(TEXTS).results[0].tokens

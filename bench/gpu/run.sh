#!/usr/bin/env bash
# Run ON THE GPU MACHINE from the repository root, after bench/gpu/prepare.sh here and after
# carrying its folders (docs/gpu.md). Two calls on the warm machine, each well under 10 minutes:
#   bash bench/gpu/run.sh      L = 2: install, CUDA checks and tests, the batch sweep (1..256 at
#                              128 tokens: reference, eager-best, ORT fp32 and fp16, with fp16's
#                              agreement with fp32 on the GPU), the realistic-mix bench, and an
#                              ONNX Runtime profile of one fp16 attribution call
#   bash bench/gpu/run.sh 10   L = 10: the batch sweep again
# Everything lands in $OUT (or ./gpu-out): logs, throughput-L*.json/.md, bench/, the profile.
set -euo pipefail
labels=${1:-2}
out=${OUT:-gpu-out}
mkdir -p "$out"
exec > >(tee "$out/run-L$labels.log") 2>&1
export PYTHONUNBUFFERED=1
nvidia-smi | tee "$out/nvidia-smi.txt"

# onnxruntime-gpu finds CUDA and cuDNN in the image's nvidia-* packages (torch's) only when told:
# gradlight's engine never imports torch, which would load them.
nvidia_libs=$(python3 - <<'PY'
import glob
import os
import site

dirs = {
    os.path.dirname(path)
    for root in site.getsitepackages()
    for path in glob.glob(os.path.join(root, "nvidia", "**", "lib*.so*"), recursive=True)
}
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="$nvidia_libs:${LD_LIBRARY_PATH:-}"

wheels=/tmp/gpu-wheels
mkdir -p "$wheels"
name=$(cat .gpu-wheel1/WHEEL_NAME)
if [[ ! -f "$wheels/$name" ]]; then
    for part in $(ls -d .gpu-wheel[1-9]* | sort -V); do cat "$part"/part-*; done >"$wheels/$name"
    echo "$(cat .gpu-wheel1/WHEEL_SHA256)  $wheels/$name" | sha256sum -c -
fi
cp .gpu-wheel0/*.whl "$wheels/"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$wheels"/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade \
    --target /tmp/site .
export PYTHONPATH=/tmp/site

# A real CUDA session, in a process that never imported torch (as gradlight serve runs).
python3 - <<'PY'
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "check", [x], [y])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
model.ir_version = 9
session = ort.InferenceSession(
    model.SerializeToString(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
)
print("onnxruntime", ort.__version__, session.get_providers())
assert session.get_providers()[0] == "CUDAExecutionProvider", "CUDA libraries not loaded"
assert session.run(None, {"x": np.ones(2, np.float32)})[0].tolist() == [2.0, 2.0]
PY

if [[ "$labels" == 2 ]]; then
    python3 -m pytest -q -rs tests/test_cuda.py | tee "$out/pytest.txt"
fi

python3 - <<'PY'
from pathlib import Path

from gradlight.bench.models import save_bert_base

if not Path("/tmp/bert-base/config.json").is_file():
    save_bert_base("/tmp/bert-base", labels=2, tokenizer_dir=".gpu-wheel0/tokenizer")
PY
python3 -m gradlight.bench.throughput /tmp/bert-base --provider cuda --labels "$labels" \
    --work-dir /tmp/throughput --out "$out/throughput-L$labels.json" \
    | tee "$out/throughput-L$labels.md"
[[ "$labels" == 2 ]] || exit 0

python3 -m gradlight.cli.main bench /tmp/bert-base --artifact /tmp/throughput/artifact-2-labels \
    --provider cuda --labels 2 --texts 64 --subset-labels 0 --out "$out/bench"

python3 - "$out" <<'PY'
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gradlight.artifact.manifest import load_manifest

artifact = Path("/tmp/throughput/artifact-2-labels")
graph = artifact / load_manifest(artifact).graphs_at("fp16")["attribution"].file
options = ort.SessionOptions()
options.enable_profiling = True
options.profile_file_prefix = str(Path(sys.argv[1]) / "ort-profile-fp16")
session = ort.InferenceSession(str(graph), options, providers=["CUDAExecutionProvider"])
feed = {
    "input_ids": np.full((64, 128), 1000, dtype=np.int64),
    "attention_mask": np.ones((64, 128), dtype=np.int64),
    "token_type_ids": np.zeros((64, 128), dtype=np.int64),
}
for _ in range(6):  # the first (warm-up) call is in the profile too
    session.run(None, feed)
events = json.loads(Path(session.end_profiling()).read_text())
kernels = {}
for event in events:
    if event.get("cat") == "Node":
        op = event["args"].get("op_name", "?")
        kernels[op] = kernels.get(op, 0) + event.get("dur", 0)
total = sum(kernels.values()) or 1
print("time per operator type, 6 calls of batch 64 x 128 tokens, fp16, L = 2:")
for op, microseconds in sorted(kernels.items(), key=lambda item: -item[1])[:15]:
    print(f"{op:28s} {microseconds / 1000:9.1f} ms {100 * microseconds / total:5.1f} %")
PY

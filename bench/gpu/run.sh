#!/usr/bin/env bash
# Run ON THE GPU MACHINE from the repository root, after bench/gpu/prepare.sh here and after
# carrying its folders (see there). One call does everything, so a measurement costs one run:
#   1. assembles and installs onnxruntime-gpu and the small wheels into /tmp/site, and gradlight;
#   2. runs the CUDA tests (tests/test_cuda.py: the CUDA provider with IOBinding, fp32 and fp16,
#      against the CPU provider) and the precision/IOBinding tests;
#   3. builds a BERT-base-sized classifier (random weights) and runs the batch sweep at 128
#      tokens, L = 2 and L = 10, batches 1 to 256 (gradlight.bench.throughput: the reference and
#      eager-best on CUDA, ORT CUDA fp32 and fp16; texts/s, latency, fraction of the peak);
#   4. runs `gradlight bench --provider cuda` (the realistic text mix, in one run);
#   5. profiles one fp16 attribution call (ONNX Runtime's profiler) for the kernels that dominate.
# Everything lands in $OUT (or ./gpu-out): logs, throughput.json, bench.{json,md,csv,png}, the
# profile, nvidia-smi.
set -euo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
exec > >(tee "$out/run.log") 2>&1
nvidia-smi | tee "$out/nvidia-smi.txt"

wheels=/tmp/gpu-wheels
mkdir -p "$wheels"
name=$(cat .gpu-wheel1/WHEEL_NAME)
cat .gpu-wheel[1-9]*/part-* >"$wheels/$name"
cp .gpu-wheel0/*.whl "$wheels/"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$wheels"/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
    --target /tmp/site .
export PYTHONPATH=/tmp/site
python3 - <<'PY'
import onnxruntime as ort

print("onnxruntime", ort.__version__, ort.get_available_providers())
assert "CUDAExecutionProvider" in ort.get_available_providers(), "no CUDA provider"
PY

python3 -m pytest -q -rs tests/test_cuda.py tests/test_precision_and_binding.py \
    | tee "$out/pytest.txt"

python3 - <<'PY'
from gradlight.bench.models import save_bert_base

save_bert_base("/tmp/bert-base", labels=2, tokenizer_dir=".gpu-wheel0/tokenizer")
PY
python3 -m gradlight.bench.throughput /tmp/bert-base --provider cuda --labels 2 10 \
    --work-dir /tmp/throughput --out "$out/throughput.json" | tee "$out/throughput.md"
python3 -m gradlight.cli.main bench /tmp/bert-base --artifact /tmp/throughput/artifact-2-labels \
    --provider cuda --labels 2 10 --texts 64 --subset-labels 0 --out "$out/bench"

python3 - "$out" <<'PY'
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gradlight.runtime.manifest import load_manifest

artifact = Path("/tmp/throughput/artifact-2-labels")
graph = artifact / load_manifest(artifact).fp16_graphs["attribution"].file
options = ort.SessionOptions()
options.enable_profiling = True
options.profile_file_prefix = str(Path(sys.argv[1]) / "ort-profile-fp16")
session = ort.InferenceSession(str(graph), options, providers=["CUDAExecutionProvider"])
feed = {
    "input_ids": np.full((64, 128), 1000, dtype=np.int64),
    "attention_mask": np.ones((64, 128), dtype=np.int64),
    "token_type_ids": np.zeros((64, 128), dtype=np.int64),
}
for _ in range(5):
    session.run(None, feed)
profile = session.end_profiling()
events = json.loads(Path(profile).read_text())
kernels = {}
for event in events:
    if event.get("cat") == "Node":
        op = event["args"].get("op_name", "?")
        kernels[op] = kernels.get(op, 0) + event.get("dur", 0)
total = sum(kernels.values()) or 1
for op, microseconds in sorted(kernels.items(), key=lambda item: -item[1])[:15]:
    print(f"{op:28s} {microseconds / 1000:9.1f} ms {100 * microseconds / total:5.1f} %")
PY

#!/usr/bin/env bash
# Run HERE (where PyPI is reachable), before bench/gpu/run.sh on the GPU machine, which reaches
# no registry. It fetches, as Python 3.12 x86-64 wheels, what that machine lacks:
# onnxruntime-gpu 1.31.1 (CUDA 13; 255 MB) and the gRPC and protobuf versions gradlight needs,
# plus MiniLM-L6's tokenizer for the BERT-base-sized bench model. The big wheel is cut into
# parts under 60 MB, each in its own git-ignored folder: carry .gpu-wheel1, .gpu-wheel2, ... one
# per `run` call, in consecutive calls while the machine is warm (ignored paths stay there),
# and .gpu-wheel0 (the small wheels and the tokenizer) with the last one.
set -euo pipefail
cd "$(dirname "$0")/../.."
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
fetch() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]}" -d "$@"
}
rm -rf .gpu-wheel*
fetch .gpu-wheel0 grpcio==1.85.3 grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 \
    protobuf==7.36.2
.venv/bin/python - <<'PY'
from transformers import AutoTokenizer

from gradlight.demo.minilm import minilm_encoder_dir

AutoTokenizer.from_pretrained(minilm_encoder_dir(), local_files_only=True).save_pretrained(
    ".gpu-wheel0/tokenizer"
)
PY
mkdir -p .gpu-wheel-big
fetch .gpu-wheel-big onnxruntime-gpu==1.31.1
wheel=$(basename .gpu-wheel-big/onnxruntime_gpu-*.whl)
digest=$(sha256sum ".gpu-wheel-big/$wheel" | cut -d' ' -f1)
(cd .gpu-wheel-big && split -b 55M -d -a 1 "$wheel" part-)
for part in .gpu-wheel-big/part-*; do
    n=$((${part##*-} + 1))
    mkdir -p ".gpu-wheel$n"
    mv "$part" ".gpu-wheel$n/"
    echo "$wheel" >".gpu-wheel$n/WHEEL_NAME"
    echo "$digest" >".gpu-wheel$n/WHEEL_SHA256"
done
rm -rf .gpu-wheel-big
du -sh .gpu-wheel*

#!/usr/bin/env bash
# The GPU check (issue 34): one 3x224x224 MobileNetV2-1.0 build with recovery trained on the GPU,
# and the same build trained on this machine's CPU, stage times side by side. Under 10 minutes on
# one GPU: recovery is held to 60 s and only the TFLite artifact is made (no .pte), in both builds.
#
#   device_tests/gpu_check.sh [PYTHON]
#
# PYTHON (default .venv/bin/python) must have a CUDA build of torch and edgepack installed
# (`make setup` on the GPU machine, then the CUDA wheel of the same torch version). Prints the
# table benchmarks/scale.py prints and writes gpu_check.json next to it ($OUT when set).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
OUT_DIR="${OUT:-.}"
"$PY" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: no CUDA GPU visible to torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'})")
print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" benchmarks/scale.py --sizes 224 --train-device cuda,cpu \
  --set pruning.recovery_seconds=60 --set 'runtime.formats=["tflite"]' \
  --json "$OUT_DIR/gpu_check.json"

#!/usr/bin/env bash
# The GPU path in one script (at most 8 minutes on one H100/H200-class GPU): paper-profile training images/s,
# inference images/s at 256 px with 10 DDIM steps and batch 32, peak GPU memory, and a 4-trial smoke sweep at
# 0.25 GPU per trial. Random SD-1.5-sized weights, built here (speed only). See bench/gpu_check.py.
#
#   bash bench/gpu_check.sh                      # on a GPU machine; results -> bench/results/gpu_check.{json,md}
#   bash bench/gpu_check.sh --out-dir "$OUT"     # results elsewhere
#   GPU_CHECK_TINY=1 bash bench/gpu_check.sh     # tiny sizes on CPU (what the test suite runs)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then py="$repo/.venv/bin/python"; else py="python3"; fi
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
"$py" -c 'import torch; print("torch", torch.__version__, "| GPU:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")'
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec timeout "${GPU_CHECK_TIMEOUT_S:-480}" "$py" "$repo/bench/gpu_check.py" "$@"

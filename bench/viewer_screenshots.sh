#!/usr/bin/env bash
# Run a tiny real sweep (or take a finished one), open its TensorBoard and screenshot it in headless Chromium,
# so a person can check by eye what a user following a sweep sees (tests only read the event files).
#
#   bench/viewer_screenshots.sh [SWEEP] [STORAGE] [OUT]
#     SWEEP    sweep id under STORAGE (default: viewer, launched here first from sweeps/smoke.yaml: 2 arms x 2
#              seeds, 24 denoiser steps, real core on the CPU, about 2-5 min on a 2-core machine)
#     STORAGE  sweep storage root (default: runs)
#     OUT      where screenshots and the status text go (default: STORAGE/reports/SWEEP/viewer)
#
# Writes OUT/{timeseries,scalars_train,scalars,hparams}.png (1280x900) and OUT/status.txt (`diad-sweep status`), then stops
# the TensorBoard it started. Needs `chromium` (Debian: apt-get install -y chromium).
# Python: $PYTHON, else .venv/bin/python, else python3; tensorboard from that Python's bin dir.
set -euo pipefail
sweep=${1:-viewer}
storage=${2:-runs}
out=${3:-$storage/reports/$sweep/viewer}
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-}
[ -n "$py" ] || { [ -x "$here/.venv/bin/python" ] && py=$here/.venv/bin/python || py=python3; }
bin=$(dirname "$py")
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "error: no chromium found (apt-get install -y chromium)" >&2; exit 2; }
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$out"

if [ "$sweep" = viewer ] && [ ! -e "$storage/viewer/sweep.json" ]; then
  nice -n 10 "$py" -m diad.sweep.cli launch "$here/sweeps/smoke.yaml" name=viewer "seeds=[0, 1]" \
    train.steps=24 train.checkpoint_every=2 train.num_threads=1 eval.num_threads=1 eval.batch_size=2 \
    --storage "$storage" --no-dashboard --num-cpus 2 | tee "$out/launch.txt"
fi
"$py" -m diad.sweep.cli status "$sweep" --storage "$storage" | tee "$out/status.txt"

port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/tensorboard" --logdir "$storage/$sweep" --host 127.0.0.1 --port "$port" >"$out/tensorboard.log" 2>&1 &
tb=$!
trap 'kill "$tb" 2>/dev/null || true' EXIT
for _ in $(seq 120); do  # TensorBoard imports for a while on a busy machine
  curl -sf "http://127.0.0.1:$port/data/runs" >/dev/null 2>&1 && break
  sleep 1
done
echo "TensorBoard runs: $(curl -sf "http://127.0.0.1:$port/data/runs")"
# TensorBoard's landing page (Time Series: its line charts draw with WebGL, which headless Chromium here does
# not render, so only axes and the value tables show), the Scalars page filtered to the training curves and
# evaluation progress (tagFilter, as typed into its filter box), the same unfiltered (groups in alphabetical
# order: diagnostics/, eval/, metrics/, train/; final values are single dots at the last step) and the HPARAMS
# table (arm, seed, grid values, headline metrics).
for shot in "timeseries:#timeseries" "scalars_train:#scalars&tagFilter=train%7Ceval" \
            "scalars:#scalars" "hparams:#hparams"; do
  name=${shot%%:*}
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
    --window-size=1280,900 --virtual-time-budget=20000 --screenshot="$out/$name.png" \
    "http://127.0.0.1:$port/${shot#*:}" >/dev/null 2>&1
done
kill "$tb"
wait "$tb" 2>/dev/null || true
trap - EXIT
ls -l "$out"

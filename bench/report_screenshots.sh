#!/usr/bin/env bash
# Render a sweep's HTML report and screenshot it in headless Chromium at the widths a user sees, so a
# person can check every figure and table by eye (the report test only parses the HTML).
#
#   bench/report_screenshots.sh RUN [STORAGE] [OUT]
#     RUN      sweep id (under STORAGE/results) or a results path
#     STORAGE  sweep storage root (default: runs)
#     OUT      where report and screenshots go (default: STORAGE/reports/RUN)
#
# Writes OUT/index.html (diad-sweep report) and OUT/screenshots/{desktop,laptop}_NN.png: the page cut into
# viewport-sized tiles (1280x900 desktop, 1024x768 laptop), plus full-page PNGs. Needs `chromium`
# (Debian: apt-get install -y chromium). Python: $PYTHON, else .venv/bin/python, else python3.
set -euo pipefail
run=${1:?usage: bench/report_screenshots.sh RUN [STORAGE] [OUT]}
storage=${2:-runs}
out=${3:-$storage/reports/$(basename "$run")}
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-}
[ -n "$py" ] || { [ -x "$here/.venv/bin/python" ] && py=$here/.venv/bin/python || py=python3; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "error: no chromium found (apt-get install -y chromium)" >&2; exit 2; }

PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$py" -c \
  'import sys; from analysis.report import main_report; print(main_report(sys.argv[1], out=sys.argv[3], storage=sys.argv[2]))' \
  "$run" "$storage" "$out"
page=$(cd "$out" && pwd)/index.html
shots=$out/screenshots
mkdir -p "$shots"
rm -f "$shots"/*.png
for view in desktop:1280:900 laptop:1024:768; do
  IFS=: read -r name width height <<<"$view"
  # A tall window gives the whole page in one PNG; it is cut into viewport tiles below.
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
    --screenshot="$shots/${name}_full.png" --window-size="$width,12000" "file://$page" >/dev/null 2>&1
  PYTHONPATH="$here" "$py" - "$shots/${name}_full.png" "$height" "$shots/$name" <<'PY'
import sys
import numpy as np
from PIL import Image

full, height, stem = Image.open(sys.argv[1]).convert("RGB"), int(sys.argv[2]), sys.argv[3]
pixels = np.asarray(full)
rows = np.nonzero((pixels < 250).any(axis=(1, 2)))[0]   # crop the blank bottom of the tall window
bottom = int(rows[-1]) + 20 if len(rows) else full.height
full = full.crop((0, 0, full.width, min(bottom, full.height)))
full.save(sys.argv[1])
for i, top in enumerate(range(0, full.height, height)):
    full.crop((0, top, full.width, min(top + height, full.height))).save(f"{stem}_{i:02d}.png")
print(f"{sys.argv[1]}: {full.width}x{full.height}, {i + 1} tiles")
PY
done
ls "$shots"

#!/usr/bin/env bash
# Create .venv and install diad-sweep into it; a no-op when pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.diad-install-stamp
want=$( (cat pyproject.toml scripts/setup.sh) | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch and torchvision pinned as a matching pair (a mismatched torchvision fails to import).
  # (The grep drops pip's notices about local index folders that do not exist on this machine.)
  .venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 -e ".[dev]" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$want" > "$stamp"
fi

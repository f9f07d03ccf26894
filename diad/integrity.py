"""Integrity by content: weight files checked against their recorded hash, cached artifacts against what made
them, non-finite weights refused, damaged JSON/safetensors as one-line errors, temp leftovers of killed writes
removed, output folders checked writable before work starts.

A verified hash is remembered per (path, size, mtime, inode), so one load hashes each file once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from diad.errors import DiadError
from diad.io import host_id, os_error_line

_VERIFIED: dict[tuple, str] = {}
STALE_AFTER_S = 24 * 3600  # temp leftovers whose writer pid cannot be checked (another host) count as dead after this
# temp names written by diad.io: ".<name>.tmp-<pid>-<host id>[-<random>]" (see diad.io.temp_tag); a pid is
# only checked when the host id is this host's (on shared storage another node may still be writing)
_TMP = re.compile(r"^\..+\.(?:tmp|old)-(\d+)-([0-9a-f]{8})(?:-[A-Za-z0-9_]+)?$")
_TMP_LEGACY_PID = re.compile(r"^\..+\.(?:tmp|old)-(\d+)$")  # older files: ".<name>.tmp-<pid>"
_TMP_LEGACY = re.compile(r"^\..+\.tmp-[A-Za-z0-9_]+$")  # older dirs: mkdtemp suffix only (age decides)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise DiadError(f"{path}: cannot read ({e.strerror})") from None
    return h.hexdigest()


def _stamp(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def verified_sha256(path: Path, expected: str | None, recover: str) -> str:
    """sha256 of `path`, which must equal `expected` (when recorded); hashed once per file version."""
    path = Path(path)
    stamp = _stamp(path)
    digest = _VERIFIED.get(stamp) or sha256_file(path)
    if expected is not None and digest != expected:
        _VERIFIED.pop(stamp, None)
        raise DiadError(f"{path}: content does not match its recorded sha256 ({digest[:12]}... != "
                        f"{expected[:12]}...); the file is damaged: {recover}")
    _VERIFIED[stamp] = digest
    return digest


def read_json(path: Path, what: str, recover: str) -> Any:
    """A JSON file as data; missing, unreadable or not-JSON is a one-line DiadError saying how to recover."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DiadError(f"{path}: {what} missing; {recover}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DiadError(f"{path}: {what} is not valid JSON ({str(e).splitlines()[0]}); {recover}") from None
    except OSError as e:
        raise DiadError(f"{path}: cannot read {what} ({e.strerror})") from None


def check_finite(module, path: Path, recover: str) -> None:
    """Refuse weights holding NaN or inf: they score as a perfect detector (all-black reconstructions)."""
    import torch

    floats = {n: t for n, t in module.state_dict().items() if torch.is_tensor(t) and t.is_floating_point()}
    if not floats or torch.isfinite(torch.cat([t.detach().reshape(-1).float() for t in floats.values()])).all():
        return  # one pass over all weights; the per-tensor search below only runs to name the culprit
    name = next(n for n, t in floats.items() if not torch.isfinite(t).all())
    raise DiadError(f"{path}: weight {name} holds NaN or inf values; {recover}")


def safetensors_error(path: Path, exc: BaseException, recover: str) -> DiadError:
    """A safetensors read failure (truncated file, tampered header) as one line."""
    text = " ".join(str(exc).split())[:160]
    return DiadError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {text}); {recover}")


# ---- writable folders ----------------------------------------------------------------------------

def ensure_writable_dir(path: str | Path, what: str) -> Path:
    """Create `path` if needed and prove it takes a file (a probe written and removed), before any work starts."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise DiadError(f"{what} {path}: exists and is a file; expected a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".diad-write-probe-{os.getpid()}"
        with open(probe, "wb") as f:
            f.write(b"ok")
        probe.unlink()
    except OSError as e:
        raise DiadError(f"{what} {os_error_line(e)}") from None
    return path


# ---- leftovers of killed writes ---------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(directory: str | Path, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove temp files/dirs of writes that were killed (their pid is dead, or older than max_age_s)."""
    directory = Path(directory)
    removed: list[Path] = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    now = time.time()
    for p in entries:
        m, legacy = _TMP.match(p.name), _TMP_LEGACY_PID.match(p.name)
        if m is None and legacy is None and not _TMP_LEGACY.match(p.name):
            continue
        try:
            old = now - p.lstat().st_mtime > max_age_s
        except OSError:
            continue
        pid = int(m.group(1)) if m is not None and m.group(2) == host_id() else \
            int(legacy.group(1)) if legacy is not None else None
        dead = pid is not None and pid != os.getpid() and not _pid_alive(pid)
        if dead or old:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed

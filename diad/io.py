"""Atomic file writing: readers never see a half-written file or directory."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from diad.errors import DiadError


def os_error_line(e: OSError, action: str = "write") -> str:
    """One line for an OSError: the file, what failed and why (disk full, read-only, not a directory ...)."""
    where = e.filename or "?"
    reason = {errno.ENOSPC: "no space left on the device (disk full)", errno.EROFS: "read-only file system",
              errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
              errno.ENOTDIR: "a path component is a file, not a directory",
              errno.EEXIST: "exists and is not a directory", errno.EDQUOT: "disk quota exceeded"}.get(
        e.errno, e.strerror or str(e))
    return f"{where}: cannot {action}: {reason}"


@contextlib.contextmanager
def _one_line_os_errors(path: Path) -> Iterator[None]:
    """An OSError while writing `path` (disk full, read-only, not a directory) as a one-line DiadError."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            e.filename = str(path)
        raise DiadError(os_error_line(e)) from None


def host_id() -> str:
    """8 hex digits naming this machine: temp names carry it so a cleaner only judges its own host's pids."""
    return hashlib.sha256(os.uname().nodename.encode()).hexdigest()[:8]


def temp_tag() -> str:
    """"<pid>-<host id>": the writer of a temp name (diad.integrity.clean_stale_temps reads it back)."""
    return f"{os.getpid()}-{host_id()}"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same directory, then rename."""
    path = Path(path)
    with _one_line_os_errors(path):
        return _write_bytes(path, data)


def _write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{temp_tag()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`.

    For writers that want a file name (torch, pyarrow, PIL) rather than bytes.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{temp_tag()}")
    try:
        with _one_line_os_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to `path`; on success it replaces `path` as a whole."""
    path = Path(path)
    with _one_line_os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{temp_tag()}-", dir=path.parent))
    try:
        with _one_line_os_errors(path):
            yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{temp_tag()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def cache_root() -> Path:
    """Where generated data and downloaded-by-hand weights live: $DIAD_CACHE or ~/.cache/diad."""
    return Path(os.environ.get("DIAD_CACHE", Path.home() / ".cache" / "diad")).expanduser()

"""The train-once cache: where its entries live and how one trial makes an entry while the others wait.

The cache holds trained checkpoints (train/<train_hash>), autoencoders (autoencoders/<key>) and reconstructions
(recon/<recon_key>). Two kinds, chosen by the cache location, with one interface (`local`, `once`):

- LocalStore, a POSIX path (one machine, or NFS that every node mounts): entries are made in place under file
  locks in <cache>/locks/.
- ObjectStore, a URI (s3://, gs://, file://): no shared file system. Each node works on a node-local copy
  (`node_local_dir`); an entry is made under a Ray lease (diad.sweep.leases), then published to the store; a
  node whose copy lacks a published entry downloads it.

Layout in the store (the relative paths of the local cache):

    <cache>/<rel>/...                     the entry's files, uploaded as they are
    <cache>/<rel>/_diad_published.json    written last: {files: {path: size}, ...}. An entry without it does not
                                          exist (a half upload is cleared and redone by the next lease holder)

    <cache>/progress/<rel>/<step>/...     the latest training checkpoint of an entry being made, and its
    <cache>/progress/<rel>/_diad_published.json   manifest: a retried or resumed trial on any node resumes
                                          from it (Tune is handed no checkpoint: see save_progress)

The node-local copy holds the same marker once an entry is complete there (downloaded, or made and published).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator, Protocol

import pyarrow.fs as pafs
from filelock import FileLock, Timeout

from diad.errors import DiadError
from diad.hashing import json_hash
from diad.io import atomic_dir, atomic_write_text, temp_tag
from diad.sweep.layout import filesystem
from diad.sweep.leases import Leases, lease_actor

MARKER = "_diad_published.json"
PROGRESS_FILE = "_diad_progress.json"  # in a node-local entry being made: the step of its last progress upload
CHUNK = 8 * 2**20
NODE_CACHE_ENV = "DIAD_NODE_CACHE"


def is_uri(location: str) -> bool:
    return "://" in location


class CacheStore(Protocol):
    """What a trial uses: the directory the backend reads and writes, and `once` to make an entry once."""

    local: Path

    def once(self, rel: str, done: str | None, what: str) -> contextlib.AbstractContextManager[bool]:
        """Context: yields True when entry `rel` is complete under `local` (its file `done` exists, or with
        done=None its directory), else False with the sole right to make it there. Waits while another trial
        makes it. On a clean exit the entry is shared with the other trials (published); on an error it is not."""

    def save_progress(self, rel: str, out_dir: Path, checkpoint_dir: Path, step: int) -> bool:
        """A training checkpoint of entry `rel` was written: keep it for a retry. True when the store keeps it
        (then Tune is given none); False when Tune's own checkpoint must carry it."""

    def restore_progress(self, rel: str, out_dir: Path) -> None:
        """Before (re)starting the training of `rel`: bring its latest kept checkpoint into out_dir."""


def _complete(path: Path, done: str | None) -> bool:
    return (path / done).is_file() if done else path.is_dir()


def _lock_name(rel: str) -> str:
    return rel.replace("/", "-") + ".lock"


@contextlib.contextmanager
def waiting_lock(path: Path, what: str) -> Iterator[None]:
    """Hold the file lock at `path`; say so when another trial holds it (the wait can be long)."""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for {what}: another trial holds {path.name}", flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


class LocalStore:
    """A cache on a POSIX path all trials see: made in place, one maker at a time per entry (file locks)."""

    def __init__(self, root: str | Path):
        self.local = Path(root)

    @contextlib.contextmanager
    def once(self, rel: str, done: str | None, what: str) -> Iterator[bool]:
        if _complete(self.local / rel, done):
            yield True
            return
        lock = self.local / "locks" / _lock_name(rel)
        lock.parent.mkdir(parents=True, exist_ok=True)
        with waiting_lock(lock, what):
            yield _complete(self.local / rel, done)  # another trial may have made it while we waited

    def save_progress(self, rel: str, out_dir: Path, checkpoint_dir: Path, step: int) -> bool:
        return False  # the entry is made in place on a shared path; Tune's checkpoint covers a node-local disk

    def restore_progress(self, rel: str, out_dir: Path) -> None:
        pass  # the core resumes from its own checkpoints in out_dir


def _is_temp(rel_path: Path) -> bool:
    """Temp names of interrupted atomic writes (diad.io): never part of a published entry."""
    return any(p.startswith(".") and (".tmp-" in p or ".old-" in p) for p in rel_path.parts)


def _files(directory: Path) -> dict[str, int]:
    """{relative path: size} of the files of an entry, without our markers and interrupted writes' temps."""
    return {p.relative_to(directory).as_posix(): p.stat().st_size for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name not in (MARKER, PROGRESS_FILE) and not _is_temp(p.relative_to(directory))}


class ObjectStore:
    """A cache in object storage: a node-local copy per node, entries published once under a Ray lease."""

    def __init__(self, location: str, local: str | Path, leases: Leases):
        self.location = location.rstrip("/")
        self.fs, self.root = filesystem(self.location)
        self.local = Path(local)
        self.leases = leases

    @contextlib.contextmanager
    def once(self, rel: str, done: str | None, what: str) -> Iterator[bool]:
        if self.fetch(rel):
            yield True
            return
        with self.leases.holding(rel, what, finished=lambda: self.fetch(rel)) as finished:
            if finished or self.fetch(rel):  # published between our look and the lease
                yield True
                return
            # complete here but not published: a killed attempt on this node made it; publish it now
            yield _complete(self.local / rel, done)
            self.publish(rel)

    # -- the node-local copy --------------------------------------------------------------------------------
    def _node_lock(self, rel: str) -> FileLock:
        """Serialises downloads and marker writes of one entry among the workers of this node."""
        path = self.local / ".locks" / _lock_name(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path))

    def fetch(self, rel: str) -> bool:
        """True when the node-local copy of `rel` is complete, after downloading it if it is published."""
        marker = self.local / rel / MARKER
        if marker.is_file():
            return True
        with self._node_lock(rel):
            if marker.is_file():
                return True
            manifest = self._manifest(rel)
            if manifest is None:
                return False
            self._download(rel, manifest)
        return True

    def _remote(self, rel: str, name: str | None = None) -> str:
        return f"{self.root}/{rel}" + (f"/{name}" if name else "")

    def _manifest(self, rel: str) -> dict | None:
        """The published entry's manifest, or None when it is not (completely) published."""
        path = self._remote(rel, MARKER)
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(path) as f:
            return json.loads(f.read().decode())

    def _download(self, rel: str, manifest: dict) -> None:
        """Copy a published entry into the node-local copy as a whole (a reader never sees half of it)."""
        target = self.local / rel
        with atomic_dir(target) as tmp:
            for name, size in manifest["files"].items():
                self._download_file(self._remote(rel, name), tmp / name, size)
            (tmp / MARKER).write_text(json.dumps(manifest, indent=1))

    def _download_file(self, src: str, dst: Path, size: int) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with self.fs.open_input_stream(src) as f, open(dst, "wb") as out:
            shutil.copyfileobj(f, out, CHUNK)
        if dst.stat().st_size != size:
            raise DiadError(f"{src}: {dst.stat().st_size} bytes, its manifest says {size}; delete that entry of "
                            f"{self.location} (it is made again)")

    # -- progress of an entry being made (training checkpoints) ---------------------------------------------
    # Kept here rather than in Tune: Tune deletes a trial's older checkpoint before its experiment state (which
    # names the checkpoint to restore) reaches object storage, so a driver killed in between resumes a trial from
    # a checkpoint that no longer exists. A manifest written after the files, old files deleted after it,
    # always names a complete checkpoint.
    def save_progress(self, rel: str, out_dir: Path, checkpoint_dir: Path, step: int) -> bool:
        base = self._remote(f"progress/{rel}")
        seq = f"{int(step):09d}"
        try:
            old = self._manifest(f"progress/{rel}")
            files = _files(Path(checkpoint_dir))
            for name in files:
                self._upload(Path(checkpoint_dir) / name, f"{base}/{seq}/{name}")
            manifest = {"step": int(step), "seq": seq, "checkpoint_rel": os.path.relpath(checkpoint_dir, out_dir),
                        "files": files}
            self._write(f"{base}/{MARKER}", json.dumps(manifest, indent=1).encode())
            if old is not None and old["seq"] != seq:
                self.fs.delete_dir_contents(f"{base}/{old['seq']}", missing_dir_ok=True)
        except OSError as e:  # a retry then resumes from an older checkpoint (or step 0): slower, not wrong
            print(f"progress of {rel} at step {step} not saved to {self.location}: {e}", flush=True)
            return True
        atomic_write_text(Path(out_dir) / PROGRESS_FILE, json.dumps(manifest))
        return True

    def restore_progress(self, rel: str, out_dir: Path) -> None:
        remote = self._manifest(f"progress/{rel}")
        local = Path(out_dir) / PROGRESS_FILE
        have = json.loads(local.read_text())["step"] if local.is_file() else -1
        if remote is None or have >= remote["step"]:
            return  # nothing kept, or this node's copy is as far (or further: killed before its upload)
        base = self._remote(f"progress/{rel}")
        with atomic_dir(Path(out_dir) / remote["checkpoint_rel"]) as tmp:
            for name, size in remote["files"].items():
                self._download_file(f"{base}/{remote['seq']}/{name}", tmp / name, size)
        atomic_write_text(local, json.dumps(remote))
        print(f"{rel}: resuming from step {remote['step']} kept in {self.location}", flush=True)

    # -- publishing -----------------------------------------------------------------------------------------
    def publish(self, rel: str) -> None:
        """Upload the node-local entry `rel`, then its marker: before the marker it is not there for anyone."""
        src = self.local / rel
        src.mkdir(parents=True, exist_ok=True)  # an entry the backend did not write: published empty
        files = _files(src)
        manifest = {"files": files, "published_by": self.leases.holder, "host": socket.gethostname(),
                    "published_at": time.time()}
        if self._manifest(rel) is None:  # else: someone took over our expired lease and published the same entry
            self.fs.delete_dir_contents(self._remote(rel), missing_dir_ok=True)  # what a killed upload left
            for name in files:
                self._upload(src / name, self._remote(rel, name))
            self._write(self._remote(rel, MARKER), json.dumps(manifest, indent=1).encode())
        self.fs.delete_dir_contents(self._remote(f"progress/{rel}"), missing_dir_ok=True)  # done: not needed now
        with self._node_lock(rel):
            atomic_write_text(src / MARKER, json.dumps(manifest, indent=1))

    def _mkdirs(self, path: str) -> None:
        if isinstance(self.fs, pafs.LocalFileSystem):  # object stores have no directories to make
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)

    def _upload(self, src: Path, dst: str) -> None:
        self._mkdirs(dst)
        with open(src, "rb") as f, self.fs.open_output_stream(dst) as out:
            shutil.copyfileobj(f, out, CHUNK)

    def _write(self, dst: str, data: bytes) -> None:
        self._mkdirs(dst)
        with self.fs.open_output_stream(dst) as out:
            out.write(data)


def node_id() -> str:
    """This node's Ray node id (several nodes on one machine are separate nodes), else the host name."""
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context().get_node_id()[:16]
    return socket.gethostname()


def node_local_dir(location: str) -> Path:
    """This node's copy of the cache at `location`: $DIAD_NODE_CACHE (or the temp dir) / node id / location hash."""
    base = Path(os.environ.get(NODE_CACHE_ENV) or Path(tempfile.gettempdir()) / "diad-node-cache")
    return base.expanduser() / node_id() / json_hash(location, 12)


def cache_store(location: str, holder: str) -> LocalStore | ObjectStore:
    """The store for a cache location: a path is a LocalStore, a URI an ObjectStore leased through Ray.

    `holder` names the trial in leases (a retried trial, the same id, gets its own lease back at once).
    """
    if not is_uri(location):
        return LocalStore(location)
    return ObjectStore(location, node_local_dir(location), Leases(lease_actor(location), holder))


def check_writable(location: str, what: str) -> None:
    """Write and delete a probe object, so a missing bucket or missing credentials is one line before any trial."""
    fs, root = filesystem(location)
    probe = f"{root.rstrip('/')}/.diad-probe-{temp_tag()}"
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            fs.create_dir(root, recursive=True)
        with fs.open_output_stream(probe) as out:
            out.write(b"probe")
        fs.delete_file(probe)
    except OSError as e:
        reason = " ".join(str(e).split())[:200]
        raise DiadError(f"{what} {location}: cannot write there ({reason}); check the bucket, the credentials "
                        f"(AWS_ACCESS_KEY_ID, ...) and AWS_ENDPOINT_URL for a non-AWS endpoint") from None


def published(location: str, kind: str = "train", keys: list[str] | None = None) -> int:
    """How many entries of one kind (train, autoencoders, recon) are published in the object-store cache at
    `location`, of `keys` only when given (a LocalStore publishes nothing: count its entries on disk)."""
    fs, root = filesystem(location)
    base = f"{root.rstrip('/')}/{kind}"
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    found = {i.path[len(base) + 1:].split("/")[0] for i in infos
             if i.path.endswith(f"/{MARKER}") and i.path[len(base) + 1:].count("/") == 1}
    return len(found if keys is None else found & set(keys))

"""A Ray cluster of several nodes on this one machine, for tests: `ray start --block` processes we own.

A head with 0 CPUs (it schedules no trials, as on a real cluster) and N worker nodes of 1 CPU each, no dashboard,
token auth off unless `env` turns it on, their files under one short temp dir (Ray's Unix socket paths must stay under
108 bytes, too short for pytest's tmp_path). Every port a second node would collide on is picked free.
`ray start --block` makes each node's processes die with it (Linux fate sharing), so stopping is: SIGTERM each
`ray start`, then check that no process naming our temp dir is left (and kill those by pid if any are).

A node that does not share a directory with the others (as a node with its own local disk): `hide={i: dir}`
starts worker i in its own mount namespace with an empty tmpfs over `dir` (needs root; `can_hide()` says).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
STARTED = "block forever"  # what `ray start --block` prints once its node is registered with the GCS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The nodes' (and so the trial workers') environment: this checkout and tests/ importable, auth off."""
    env = dict(os.environ)
    path = [str(ROOT), str(TESTS_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env.update(PYTHONPATH=os.pathsep.join(path), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1")
    env.update(extra or {})
    return env


def _hidden(path: str, cmd: list[str]) -> list[str]:
    """`cmd` in a private mount namespace where `path` is an empty tmpfs (exec: the pid stays the node's)."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"',
            path, *cmd]


def can_hide() -> bool:
    """Can this process start a node that sees another file system at a path (unshare + mount as root)?"""
    d = tempfile.mkdtemp(prefix="rh", dir="/tmp")
    try:
        return subprocess.run(_hidden(d, ["true"]), capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        os.rmdir(d)


def own_pids(marker: str) -> list[int]:
    """Pids of live processes whose command line names `marker` (our temp dir): our raylets, GCS, workers."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((ln for ln in (proc / "status").read_text().splitlines() if ln.startswith("State:")), "")
        except OSError:
            continue
        if marker in cmd and "zombie" not in state:
            pids.append(int(proc.name))
    return pids


class LocalCluster:
    """`with LocalCluster(n_workers=2, env=...) as c:` -> c.address ("127.0.0.1:port"); stopped on exit."""

    def __init__(self, n_workers: int = 2, env: dict[str, str] | None = None, hide: dict[int, str] | None = None,
                 start_timeout_s: float = 180):
        self.n_workers, self.env, self.hide, self.timeout = n_workers, cluster_env(env), hide or {}, start_timeout_s
        self.temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")
        self.procs: list[tuple[subprocess.Popen, Path]] = []
        self.address: str | None = None
        self.leftover: list[int] = []  # pids found alive after stop (then killed): a cleanup defect

    def _spawn(self, name: str, args: list[str], hide: str | None = None) -> tuple[subprocess.Popen, Path]:
        log = Path(self.temp) / f"{name}.out"
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats",
               "--object-store-memory=80000000", f"--dashboard-agent-listen-port={free_port()}", *args]
        cmd = _hidden(hide, cmd) if hide else cmd
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.temp)
        self.procs.append((proc, log))
        return proc, log

    def _wait(self, proc: subprocess.Popen, log: Path) -> None:
        deadline = time.time() + self.timeout
        while STARTED not in log.read_text():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray node {log.stem} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)

    def start(self) -> "LocalCluster":
        port = free_port()
        self._wait(*self._spawn("head", ["--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false",
                                         f"--ray-client-server-port={free_port()}", f"--temp-dir={self.temp}"]))
        self.address = f"127.0.0.1:{port}"
        for i in range(self.n_workers):  # one at a time: together they can pass Ray's 30 s raylet start limit
            self._wait(*self._spawn(f"worker{i}", [f"--address={self.address}", "--num-cpus=1"], self.hide.get(i)))
        return self

    def stop(self) -> None:
        """Workers first, then the head; anything of ours still alive after 30 s is killed by pid."""
        for proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        deadline = time.time() + 10
        while own_pids(self.temp) and time.time() < deadline:
            time.sleep(0.2)
        self.leftover = own_pids(self.temp)
        for pid in self.leftover:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

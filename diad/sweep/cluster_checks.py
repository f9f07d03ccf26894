"""Joining a Ray cluster (`--address`) and the checks after it, where a wrong set-up would hang or scatter files.

- An address where nothing listens makes `ray.init` wait for minutes: a TCP connect (5 s) first, else one line.
- A refused join (most often a missing or wrong token) is a one-line DiadError saying where the token goes.

- A local storage or cache path is only valid if every node mounts the same file system there: the driver
  writes a probe file and a 0-CPU task pinned to each alive node looks for it. A node that does not see it
  would write its trials' results and checkpoints to its own disk (lost to the driver, trainings repeated),
  so that is a one-line DiadError before any trial starts. URIs (s3://...) need no probe.
- A trial that no node can host waits in Tune forever: one line says so up front (not an error: an autoscaler
  may still add a GPU node).
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from diad.errors import DiadError

PROBE_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 5.0
TOKEN_HINT = ("a cluster with token auth needs its token here: ~/.ray/auth_token, $RAY_AUTH_TOKEN_PATH or "
              "$RAY_AUTH_TOKEN, with RAY_AUTH_MODE=token")


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """host:port (or ray://host:port) accepts TCP connections; `auto` and unparsable forms are left to Ray."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise DiadError(f"--address {address}: nothing accepts connections at {host}:{port} ({e.strerror or e}); "
                        "expected a running Ray head (`ray start --head`), its GCS port (6379 by default) "
                        "or ray://host:10001") from None


def join(address: str):
    """ray.init(address=...) that fails in one line instead of hanging or printing a traceback."""
    check_reachable(address)
    from ray.exceptions import AuthenticationError

    try:
        return ray.init(address=address)
    except (ConnectionError, AuthenticationError) as e:
        why = " ".join((getattr(e, "message", None) or str(e)).split())[:200]  # not its cause: a traceback text
        raise DiadError(f"--address {address}: could not join the Ray cluster ({why}); {TOKEN_HINT}") from None


@ray.remote(num_cpus=0)
def _sees(paths: list[str]) -> list[bool]:
    return [os.path.exists(p) for p in paths]


def _alive_nodes() -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


def _name(node: dict) -> str:
    return f"{node.get('NodeManagerAddress', '?')} (node {node['NodeID'][:12]})"


def check_shared_paths(paths: dict[str, str], timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Every alive node sees each local directory of `paths` ({"--storage": "/mnt/shared/runs", ...})."""
    local = {flag: path for flag, path in paths.items() if "://" not in path}
    if not local:
        return
    token = uuid.uuid4().hex[:12]
    probes = {flag: Path(path) / f".diad-shared-probe-{token}" for flag, path in local.items()}
    for probe in probes.values():
        probe.write_text("written by the sweep driver; every node must see this file\n")
    try:
        nodes = _alive_nodes()
        refs = [_sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote([str(p) for p in probes.values()]) for n in nodes]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        silent = []
        for node, ref in zip(nodes, refs):
            if ref not in ready:
                silent.append(_name(node))
                continue
            for flag, seen in zip(probes, ray.get(ref)):
                if not seen:
                    raise DiadError(f"{flag} {local[flag]} is not shared: Ray node {_name(node)} does not see files "
                                    "the driver writes there; give a path every node mounts (NFS, EFS, a "
                                    "ReadWriteMany volume) or object storage (--storage s3://bucket/prefix)")
        if silent:
            print(f"warning: could not check that {', '.join(local.values())} is shared: no answer within "
                  f"{timeout_s:.0f} s from {', '.join(silent)}", flush=True)
    finally:
        for probe in probes.values():
            probe.unlink(missing_ok=True)


def resource_note(nodes: list[dict], cpu: float, gpu: float) -> str | None:
    """One line when no alive node has the CPUs and GPUs one trial reserves, else None."""
    def fits(n: dict) -> bool:
        res = n.get("Resources", {})
        return res.get("CPU", 0) >= cpu and res.get("GPU", 0) >= gpu

    alive = [n for n in nodes if n.get("Alive")]
    if any(fits(n) for n in alive):
        return None
    have = ", ".join(f"{n.get('Resources', {}).get('CPU', 0):g} CPU/{n.get('Resources', {}).get('GPU', 0):g} GPU"
                     for n in alive) or "none"
    return (f"warning: no node of the cluster can host a trial (each reserves resources.cpu={cpu:g}, "
            f"resources.gpu={gpu:g}; nodes now: {have}): trials wait until an autoscaler adds such a node")


def check_cluster(paths: dict[str, str], resources: list) -> None:
    """After `ray.init(address=...)`: shared paths (an error) and, per spec's `resources`, a warning line."""
    nodes = _alive_nodes()
    for cpu, gpu in sorted({(r.cpu, r.gpu) for r in resources}):
        note = resource_note(nodes, cpu, gpu)
        if note:
            print(note, flush=True)
    check_shared_paths(paths)

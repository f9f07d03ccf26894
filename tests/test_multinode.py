"""Sweeps on a multi-node Ray cluster on this one machine: a 0-CPU head and two 1-CPU worker nodes.

The driver is its own process joining through `address`, as `ray job submit -- diad-sweep launch ... --address
auto` is on a real cluster (this pytest process already holds a local Ray: the `ray_session` fixture). The
nodes share this machine's disk, as cluster nodes share an NFS mount. What a real AWS/KubeRay cluster adds
(separate disks, the network, autoscaling) is not tested here.
"""

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from diad.sweep.cluster_checks import resource_note
from ray_cluster import ROOT, LocalCluster, can_hide

pytest.importorskip("ray")

N_WORKERS = 2
# Four trainings of ~1.2 s each on two 1-CPU nodes: two run at once, one per node (each reserves 1 CPU).
SPEC = """\
name: multinode
base:
  train: {steps: 4, checkpoint_every: 2, step_s: 0.3}
arms:
  - {name: ldm, model.variant: ldm}
  - {name: msg, model.variant: msg}
  - {name: sgeb4, model.variant: sgeb4}
  - {name: diad, model.variant: diad}
resources: {cpu: 1}
"""

# The driver: launch with the fake core against the cluster, then report the cluster's nodes.
DRIVER = """\
import json, sys
import ray
from diad.errors import DiadError
from diad.sweep import runner
from fake_backend import FakeBackend
try:
    summary = runner.launch(sys.argv[1], storage=sys.argv[2], address=sys.argv[3], dashboard=False,
                            backend=FakeBackend())
except DiadError as e:
    print(f"error: {e}")
    sys.exit(2)
nodes = [{"id": n["NodeID"], "ip": n["NodeManagerAddress"], "cpu": n["Resources"].get("CPU", 0)}
         for n in ray.nodes() if n["Alive"]]
print("RESULT " + json.dumps({"summary": summary, "nodes": nodes}, default=str))
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The cluster for this module; torn down (and checked for leftover processes) even when a test fails."""
    cache = tmp_path_factory.mktemp("diad-cache")
    hidden = tmp_path_factory.mktemp("not-shared")
    token = tmp_path_factory.mktemp("token") / "auth_token"
    token.write_text("0123456789abcdef" * 2)
    hide = {1: str(hidden)} if can_hide() else {}
    env = {"DIAD_CACHE": str(cache), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}  # as in production
    with LocalCluster(N_WORKERS, env=env, hide=hide) as c:
        c.hidden = hidden if hide else None
        yield c
    assert not c.leftover, f"processes of the test cluster still alive after stop: {c.leftover}"


def _driver(cmd: list[str], env: dict, timeout: float = 120, rc: int = 0) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert res.returncode == rc, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "multinode.yaml"
    path.write_text(text)
    return path


def _one_row_set_per_point(df: pd.DataFrame, n_points: int, categories: set) -> None:
    assert df["run_key"].nunique() == n_points and (df["status"] == "ok").all()
    assert df.groupby(["run_key", "category"]).size().max() == 1  # no duplicated rows
    assert all(set(g) == categories for _, g in df.groupby("run_key")["category"])  # no lost rows


@pytest.mark.slow  # a 3-node cluster: ~1 min to start and stop on this 2-core machine under load
def test_fake_sweep_runs_on_both_worker_nodes(cluster, tmp_path):
    spec, storage = _spec(tmp_path), tmp_path / "runs"
    t0 = time.time()
    res = _driver([sys.executable, "-c", DRIVER, str(spec), str(storage), cluster.address], cluster.env)
    out = json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    summary, nodes = out["summary"], out["nodes"]
    assert summary["points"] == 4 and summary["errored"] == 0 and summary["failed"] == 0, summary
    workers = {n["id"] for n in nodes if n["cpu"] == 1}
    assert len(nodes) == 1 + N_WORKERS and len(workers) == N_WORKERS
    df = pd.read_parquet(storage / "results" / "sweep_id=multinode")
    _one_row_set_per_point(df, 4, {"a", "b", "mean"})
    assert set(df["node_id"]) == workers  # both worker nodes ran trials; the 0-CPU head none
    assert df.groupby("run_key")["node_id"].nunique().max() == 1  # a trial's rows name the one node it ran on
    assert set(df["node_ip"]) == {n["ip"] for n in nodes if n["id"] in workers}
    assert (df["hostname"] == socket.gethostname()).all()
    print(f"multinode fake sweep: {len(df['run_key'].unique())} trials on nodes {sorted(workers)}, "
          f"driver {time.time() - t0:.1f} s")


@pytest.mark.slow
def test_storage_one_node_does_not_share_is_refused_before_any_trial(cluster, tmp_path):
    if cluster.hidden is None:
        pytest.skip("needs root to give one node its own mount namespace (unshare -m)")
    storage = cluster.hidden / "runs"  # worker 1 sees an empty tmpfs here: its rows would land on its own disk
    res = _driver([sys.executable, "-c", DRIVER, str(_spec(tmp_path)), str(storage), cluster.address], cluster.env,
                  rc=2)
    errors = [ln for ln in res.stdout.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and f"--storage {storage} is not shared: Ray node " in errors[0], res.stdout
    assert not (storage / "results").exists() and not list(storage.glob(".diad-shared-probe-*"))


@pytest.mark.slow
def test_wrong_token_is_one_line_naming_where_the_token_goes(cluster, tmp_path):
    wrong = tmp_path / "other_token"
    wrong.write_text("f" * 32)
    env = dict(cluster.env, RAY_AUTH_TOKEN_PATH=str(wrong), RAY_gcs_server_port_wait_time_s="3")  # Ray's 20 s -> 3
    res = _driver([sys.executable, "-c", DRIVER, str(_spec(tmp_path)), str(tmp_path / "runs"), cluster.address], env,
                  rc=2)
    errors = [ln for ln in res.stdout.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and f"--address {cluster.address}: could not join the Ray cluster" in errors[0]
    assert "~/.ray/auth_token, $RAY_AUTH_TOKEN_PATH or $RAY_AUTH_TOKEN" in errors[0]


def test_address_where_nothing_listens_fails_at_once():
    from diad.errors import DiadError
    from diad.sweep.cluster_checks import join
    from ray_cluster import free_port

    address = f"127.0.0.1:{free_port()}"  # ray.init(address=...) would wait there for minutes
    t0 = time.time()
    with pytest.raises(DiadError, match=f"--address {address}: nothing accepts connections at {address}"):
        join(address)
    assert time.time() - t0 < 10


def test_resource_note_names_what_no_node_has():
    nodes = [{"Alive": True, "Resources": {"CPU": 0.0}}, {"Alive": True, "Resources": {"CPU": 8.0}},
             {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 1.0}}]
    assert resource_note(nodes, cpu=1, gpu=0) is None
    note = resource_note(nodes, cpu=1, gpu=1)  # the GPU node is dead: the trials would wait forever
    assert note.startswith("warning: no node of the cluster can host a trial") and "0 CPU/0 GPU, 8 CPU/0 GPU" in note
    assert resource_note(nodes, cpu=16, gpu=0) is not None


@pytest.mark.slow
def test_real_core_smoke_sweep_runs_on_both_nodes(cluster, tmp_path):
    """sweeps/smoke.yaml on the real core through the CLI: its two trials run at once, one per worker node."""
    storage = tmp_path / "runs"
    cmd = [sys.executable, "-m", "diad.sweep.cli", "launch", str(ROOT / "sweeps" / "smoke.yaml"), "--storage",
           str(storage), "--address", cluster.address, "--no-dashboard"]
    res = _driver(cmd, cluster.env, timeout=900)
    assert '"errored": 0' in res.stdout, res.stdout[-2000:]
    df = pd.read_parquet(storage / "results" / "sweep_id=smoke")
    _one_row_set_per_point(df, 2, {"brick", "mean"})
    assert df["node_id"].nunique() == 2 and df["image_auroc"].between(0, 1).all()


def test_probe_and_node_columns_on_the_session_ray(ray_session, tmp_path):
    """The cheap halves of the above on one local node: the probe passes and cleans up; a task names its node."""
    import ray

    from diad.sweep.cluster_checks import check_shared_paths
    from diad.sweep.node import node_columns

    check_shared_paths({"--storage": str(tmp_path), "--cache-dir": "s3://bucket/cache"})  # URIs are not probed
    assert list(tmp_path.iterdir()) == []
    where = ray.get(ray.remote(num_cpus=0)(node_columns).remote())
    assert where["node_id"] == ray.get_runtime_context().get_node_id()
    assert where["node_ip"] == ray.nodes()[0]["NodeManagerAddress"] and where["hostname"] == socket.gethostname()

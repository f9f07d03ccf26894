"""Sweeps on object storage with no shared file system: a real S3 server (moto) on the loopback address.

Results, Tune's experiment state and the train-once cache all live in s3://; each node keeps a node-local copy of
the cache and trains once through Ray leases (diad.sweep.cache_store, diad.sweep.leases).
"""

import json
import logging
import os
import signal
import subprocess
import sys
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from diad.sweep import runner
from diad.sweep.cache_store import MARKER, ObjectStore, published
from diad.sweep.leases import Leases, LeaseTable
from diad.sweep.results import read_rows

moto_server = pytest.importorskip("moto.server")

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
BUCKET = "diad-test"


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 (a free port) with one bucket; the AWS_* variables point at it.

    Returns the environment a subprocess needs to reach it (pyarrow honours AWS_ENDPOINT_URL)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
               "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], allow_bucket_creation=True).create_dir(BUCKET)
            yield env
    finally:
        server.stop()


def _prefix() -> str:
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}"


def _store(location, local, table, holder):
    return ObjectStore(location, local, Leases(table, holder, ttl_s=5.0, poll_s=0.05))


def test_a_node_without_the_entry_downloads_it_and_half_uploads_do_not_count(s3, tmp_path):
    location, table = f"{_prefix()}/cache", LeaseTable()
    a = _store(location, tmp_path / "node-a", table, "trial a")
    b = _store(location, tmp_path / "node-b", table, "trial b")
    weights = os.urandom(3 * 2**20 + 17)  # above one copy chunk
    with a.once("train/h1", "done.json", "training h1") as ready:
        assert not ready and table.held() == {"train/h1": "trial a"}
        (a.local / "train/h1/checkpoint").mkdir(parents=True)
        (a.local / "train/h1/checkpoint/w.bin").write_bytes(weights)
        (a.local / "train/h1/.w.bin.tmp-1-deadbeef").write_bytes(b"x")  # an interrupted write: not published
        (a.local / "train/h1/done.json").write_text("{}")
    assert table.held() == {} and published(location, "train") == 1
    assert not (tmp_path / "node-b").exists()
    with b.once("train/h1", "done.json", "training h1") as ready:
        assert ready  # node b had no copy: downloaded, not made again
    assert (b.local / "train/h1/checkpoint/w.bin").read_bytes() == weights
    assert not (b.local / "train/h1/.w.bin.tmp-1-deadbeef").exists()
    shutil.rmtree(b.local / "train/h1")  # a node-local copy lost (a new node, a cleaned /tmp): fetched again
    assert b.fetch("train/h1") and (b.local / "train/h1/checkpoint/w.bin").read_bytes() == weights

    fs, root = pafs.FileSystem.from_uri(location)
    with fs.open_output_stream(f"{root}/train/h2/checkpoint/w.bin") as f:  # an upload killed before its marker
        f.write(b"half")
    assert not b.fetch("train/h2") and published(location, "train") == 1
    with pytest.raises(RuntimeError):
        with b.once("train/h2", "done.json", "training h2") as ready:
            assert not ready
            raise RuntimeError("training failed")
    assert not a.fetch("train/h2") and table.held() == {}  # a failed maker publishes nothing, frees the lease
    with a.once("train/h2", "done.json", "training h2") as ready:
        assert not ready
        (a.local / "train/h2").mkdir(parents=True)
        (a.local / "train/h2/done.json").write_text("{}")
    assert fs.get_file_info(f"{root}/train/h2/checkpoint/w.bin").type == pafs.FileType.NotFound  # cleared
    assert json.loads((a.local / "train/h2" / MARKER).read_text())["files"] == {"done.json": 2}


def test_training_progress_kept_in_the_store_resumes_on_another_node(s3, tmp_path):
    location, table = f"{_prefix()}/cache", LeaseTable()
    a = _store(location, tmp_path / "node-a", table, "trial a")
    b = _store(location, tmp_path / "node-b", table, "trial b")
    out_a, out_b = a.local / "train/h", b.local / "train/h"
    for step in (2, 4):
        (out_a / "checkpoint").mkdir(parents=True, exist_ok=True)
        (out_a / "checkpoint/state.json").write_text(json.dumps({"step": step}))
        assert a.save_progress("train/h", out_a, out_a / "checkpoint", step)  # kept: Tune gets no checkpoint
    fs, root = pafs.FileSystem.from_uri(location)
    kept = fs.get_file_info(pafs.FileSelector(f"{root}/progress/train/h", recursive=True))
    assert sorted(i.path.split("progress/train/h/")[1] for i in kept if i.type == pafs.FileType.File) == \
        ["000000004/state.json", MARKER]  # the step-2 files went once step 4's manifest was written
    b.restore_progress("train/h", out_b)  # node b never saw this training: it gets the step-4 checkpoint
    assert json.loads((out_b / "checkpoint/state.json").read_text()) == {"step": 4}
    (out_b / "checkpoint/state.json").write_text(json.dumps({"step": 5}))  # b went further, killed before upload
    b.restore_progress("train/h", out_b)
    assert json.loads((out_b / "checkpoint/state.json").read_text()) == {"step": 5}  # its own copy is kept
    with b.once("train/h", "done.json", "training h") as ready:
        assert not ready
        (out_b / "done.json").write_text("{}")
    assert fs.get_file_info(pafs.FileSelector(f"{root}/progress/train/h", allow_not_found=True)) == []


def test_lease_table_expiry_takeover_and_same_holder():
    now = [0.0]
    table = LeaseTable(clock=lambda: now[0])
    assert table.acquire("k", "a", 10.0) is None and table.acquire("k", "b", 10.0) == "a"
    now[0] = 9.0
    assert table.acquire("k", "a", 10.0) is None  # renewed: now held until 19
    now[0] = 18.0
    assert table.acquire("k", "b", 10.0) == "a"
    now[0] = 19.5
    assert table.acquire("k", "b", 10.0) is None  # a stopped renewing: b takes over
    assert not table.release("k", "a") and table.held() == {"k": "b"}
    assert table.acquire("k", "b", 10.0) is None  # a retried trial (same holder) gets its lease at once
    assert table.release("k", "b") and table.held() == {}


def test_a_live_heartbeat_keeps_the_lease_and_a_stopped_one_loses_it():
    table = LeaseTable()
    ttl = 0.4
    got = threading.Event()

    def waiter():
        with Leases(table, "b", ttl_s=ttl, poll_s=0.02).holding("k", "k", finished=lambda: False) as finished:
            assert not finished
            got.set()

    with Leases(table, "a", ttl_s=ttl, poll_s=0.02).holding("k", "k", finished=lambda: False):
        thread = threading.Thread(target=waiter)
        thread.start()
        assert not got.wait(4 * ttl)  # the holder renews: no takeover however long it works
    assert got.wait(2.0)  # released: the waiter has it
    thread.join()
    assert table.held() == {}

    table.acquire("k", "killed", ttl)  # a holder that never renews (its worker was SIGKILLed)
    start = time.monotonic()
    with Leases(table, "c", ttl_s=ttl, poll_s=0.02).holding("k", "k", finished=lambda: False) as finished:
        waited = time.monotonic() - start
        assert not finished and table.held() == {"k": "c"}
    assert 0.5 * ttl < waited < 10 * ttl


SPEC = """\
name: fake_s3
base:
  data: {image_size: 32}
  train: {steps: 50, checkpoint_every: 5, step_s: 0.1}
arms:
  - {name: ldm, model.variant: ldm}
  - {name: diad, model.variant: diad}
axes:
  eval.backbone: [efficientnet_lite0, resnet18]
resources: {cpu: 1}
max_concurrent_trials: 2  # a trial ends (Tune drops its placement group) while the other holds leases
max_failures: 2
"""

LAUNCH = ("import sys; from diad.sweep import runner; from fake_backend import FakeBackend; "
          "runner.launch(sys.argv[1], storage=sys.argv[2], dashboard=False, num_cpus=2, backend=FakeBackend())")


def _ray_processes(marker: str) -> list[int]:
    """Pids of the processes whose command line names `marker` (the private Ray temp dir of this test)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if marker in proc.joinpath("cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


@pytest.fixture
def driver_env(s3, tmp_path):
    """Environment of the driver subprocesses: S3, a private Ray temp dir (short: socket paths), node-local cache
    and data cache under tmp_path. Every process left with the Ray temp dir in its command line is killed after."""
    ray_tmp = tempfile.mkdtemp(prefix="rs3", dir="/tmp")
    env = dict(os.environ, **s3, RAY_AUTH_MODE="disabled", RAY_TMPDIR=ray_tmp,
               DIAD_NODE_CACHE=str(tmp_path / "node-cache"), DIAD_CACHE=str(tmp_path / "diad-cache"),
               FAKE_BACKEND_LOG=str(tmp_path / "fake.log"),
               PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    yield env
    for pid in _ray_processes(ray_tmp):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _log(tmp_path) -> list[list[str]]:
    path = tmp_path / "fake.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_killed_driver_then_resume_on_s3_trains_once_and_keeps_nothing_local(driver_env, tmp_path):
    storage = f"{_prefix()}/runs"
    spec = tmp_path / "fake_s3.yaml"
    spec.write_text(SPEC)
    with (tmp_path / "driver.log").open("w") as out:
        driver = subprocess.Popen([sys.executable, "-c", LAUNCH, str(spec), storage], cwd=tmp_path, env=driver_env,
                                  stdout=out, stderr=subprocess.STDOUT)
    tail = lambda: (tmp_path / "driver.log").read_text()[-3000:]  # noqa: E731
    deadline = time.time() + 180
    while time.time() < deadline:  # kill while the second training runs: the first one is done and published
        lines = _log(tmp_path)
        if any(w[0] == "trained" for w in lines) and sum(w[0] == "train" for w in lines) == 2:
            break
        assert driver.poll() is None, "the driver ended before the second training:\n" + tail()
        time.sleep(0.1)
    else:
        pytest.fail("no second training within 180 s:\n" + tail())
    time.sleep(0.5)  # past a checkpoint of the second training
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    fs, results = pafs.FileSystem.from_uri(f"{storage}/results/sweep_id=fake_s3")
    files = [i for i in fs.get_file_info(pafs.FileSelector(results, allow_not_found=True))]
    assert len(files) < 4, tail()  # killed mid-sweep (the finished training's trials may not have written yet)

    resume = subprocess.run([sys.executable, "-m", "diad.sweep.cli", "resume", "fake_s3", "--storage", storage,
                             "--no-dashboard", "--num-cpus", "2"], cwd=tmp_path, env=driver_env,
                            capture_output=True, text=True, timeout=240)
    assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr[-3000:] + "\n--- before the kill ---\n" + tail()

    df = read_rows(storage, "fake_s3").to_pandas()
    assert df["run_key"].nunique() == 4 and (df["status"] == "ok").all()  # nothing lost
    assert len(df) == 4 * 3 and df.groupby(["run_key", "category"]).size().max() == 1  # nothing duplicated

    lines = _log(tmp_path)
    trained = [w[1] for w in lines if w[0] == "trained"]
    assert sorted(trained) == sorted(set(df["train_hash"])) and len(trained) == 2  # each training finished once
    starts = {}
    for w in lines:
        if w[0] == "train":
            starts.setdefault(w[1], []).append(int(w[2]))
    first, second = starts[trained[0]], starts[trained[1]]
    assert first == [0]  # the training finished before the kill never ran again (the resumed node downloaded it)
    assert second[0] == 0 and len(second) <= 2  # the killed one went on once (from its Tune checkpoint if saved)
    assert sum(w[0] == "ae" for w in lines) == 1  # the shared stage: made once across both drivers' nodes

    # nothing local but the node-local copies (two Ray sessions: two nodes), logs and the spec
    assert sorted(p.name for p in tmp_path.iterdir()) == ["driver.log", "fake.log", "fake_s3.yaml", "node-cache"]
    assert len(list((tmp_path / "node-cache").iterdir())) == 2
    info = runner.sweep_status("fake_s3", storage)
    assert (info["ok"], info["pending"], info["trainings_cached"], info["resumable"]) == (4, 0, 2, True)


def test_the_lease_actor_outlives_the_trial_that_created_it(ray_session):
    """Tune's placement groups capture child actors: a lease actor made inside one would die with its trial."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from diad.sweep.leases import lease_actor

    location = f"test://{uuid.uuid4().hex}"
    group = placement_group([{"CPU": 1}])
    ray.get(group.ready(), timeout=60)

    @ray.remote(num_cpus=1)
    def trial():
        return ray.get(lease_actor(location).acquire.remote("k", "trial a", 60.0))

    in_group = PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=True)
    assert ray.get(trial.options(scheduling_strategy=in_group).remote(), timeout=60) is None
    remove_placement_group(group)  # what Tune does when that trial ends
    time.sleep(1.0)
    table = lease_actor(location)
    try:
        assert ray.get(table.held.remote(), timeout=20) == {"k": "trial a"}  # alive, its leases kept
    finally:
        ray.kill(table)

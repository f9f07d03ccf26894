"""Several specs in one launch (diad/sweep/group.py) with the fake core: shared trainings, one Tune experiment,
each sweep's own results and status, resume after an interrupted group, and the errors of bad input."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from diad.errors import DiadError
from diad.sweep import group, runner
from diad.sweep.cli import main
from fake_backend import FakeBackend

FAKE = FakeBackend()
ROOT = Path(__file__).resolve().parents[1]

# a: two arms; b: the diad arm's training at two T; c: the same training, one more backbone, 2 CPUs per trial.
SPECS = {
    "a": """\
        name: a
        base: {train: {steps: 4, checkpoint_every: 2}}
        arms:
          - {name: ldm, model.variant: ldm}
          - {name: diad, model.variant: diad}
        """,
    "b": """\
        name: b
        base: {model: {variant: diad}, train: {steps: 4, checkpoint_every: 2}}
        axes: {eval.forward_steps: [500, 1000]}
        """,
    "c": """\
        name: c
        base: {model: {variant: diad}, train: {steps: 4, checkpoint_every: 2}}
        axes: {eval.backbone: [resnet18]}
        resources: {cpu: 2}
        """,
}


def _write(tmp_path, texts: dict[str, str]) -> list[str]:
    paths = []
    for stem, text in texts.items():
        path = tmp_path / f"{stem}.yaml"
        path.write_text(textwrap.dedent(text))
        paths.append(str(path))
    return paths


def _rows(storage, sweep_id):
    return pd.read_parquet(Path(storage) / "results" / f"sweep_id={sweep_id}")


def _lines(path):
    return Path(path).read_text().split("\n")[:-1]


def test_several_specs_share_trainings_and_keep_their_own_results(ray_session, tmp_path):
    storage = tmp_path / "runs"
    summary = runner.launch(_write(tmp_path, SPECS), storage=str(storage), dashboard=False, backend=FAKE)
    assert summary["sweep_id"] == "a+b+c" and summary["sweeps"] == ["a", "b", "c"]
    assert (summary["points"], summary["trainings"], summary["ran"], summary["errored"]) == (5, 2, 5, 0)
    cache = storage / "cache"  # the storage root's one cache
    assert sorted(_lines(p) for p in cache.glob("train/*/starts.txt")) == [["0"], ["0"]]  # 2 trainings, once each
    assert len(_lines(cache / "recon" / "computed.txt")) == 3  # ldm T1000, diad T1000 (shared by a, b, c), diad T500
    df = pd.read_parquet(storage / "results")  # the hive partition column sweep_id: each sweep's own dir
    rows = {s: df[df["sweep_id"].astype(str) == s] for s in "abc"}
    assert [rows[s]["run_key"].nunique() for s in "abc"] == [2, 2, 1] and len(df) == 5 * 3
    assert (df["status"] == "ok").all()
    diad = rows["a"][rows["a"]["model.variant"] == "diad"]["train_hash"].iloc[0]
    assert set(rows["b"]["train_hash"]) == set(rows["c"]["train_hash"]) == {diad}  # one training for three sweeps
    # per-spec resources held per trial: c's trial reserved 2 CPUs, every other trial 1
    cpus = [line.split() for line in _lines(cache / "recon" / "cpus.txt")]
    assert len(cpus) == 5 and {float(n) for b, n in cpus if b == "resnet18"} == {2.0}
    assert {float(n) for b, n in cpus if b != "resnet18"} == {1.0}
    # one Tune experiment for the group, each member naming it; status per member
    assert (storage / "a+b+c" / group.GROUP_FILE).is_file() and tune_state(storage / "a+b+c")
    for s, n_ok, n_train in [("a", 2, 2), ("b", 2, 1), ("c", 1, 1)]:
        status = runner.sweep_status(s, str(storage))
        assert (status["ok"], status["pending"], status["trainings_cached"], status["resumable"]) == \
            (n_ok, 0, n_train, True)
    out = CliRunner().invoke(main, ["ls", "--storage", str(storage)]).output
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["a", "b", "c"]  # members, not the group
    again = runner.launch(_write(tmp_path, SPECS), storage=str(storage), dashboard=False, backend=FAKE)
    assert again["ran"] == 0 and sum(len(_rows(storage, s)) for s in "abc") == 5 * 3
    resumed = runner.resume("a+b+c", str(storage), dashboard=False)  # by the group's name: nothing left to run
    assert resumed["sweeps"] == ["a", "b", "c"] and resumed["errored"] == 0
    assert sum(len(_rows(storage, s)) for s in "abc") == 5 * 3


def tune_state(path: Path) -> bool:
    return any(path.glob("experiment_state-*.json"))


def test_interrupted_group_resumes_by_member_id(ray_session, tmp_path):
    import ray

    slow = {k: v.replace("steps: 4, checkpoint_every: 2", "steps: 6, checkpoint_every: 2, step_s: 0.4")
            for k, v in SPECS.items() if k in "ab"}
    specs, storage = _write(tmp_path, slow), tmp_path / "runs"
    code = ("import sys; from diad.sweep import runner; from fake_backend import FakeBackend; "
            "runner.launch(sys.argv[1:3], ['max_concurrent_trials=1'], storage=sys.argv[3], address=sys.argv[4], "
            "dashboard=False, backend=FakeBackend())")
    log = tmp_path / "driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen([sys.executable, "-c", code, *specs, str(storage),
                                   ray.get_runtime_context().gcs_address], cwd=ROOT, stdout=out,
                                  stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not list(storage.glob("results/*/*.parquet")) and time.time() < deadline:
        assert driver.poll() is None, "the driver ended before its first result:\n" + log.read_text()[-3000:]
        time.sleep(0.2)
    time.sleep(1.0)  # let Tune snapshot its experiment state
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert len(list(storage.glob("results/*/*.parquet"))) < 4, log.read_text()[-3000:]  # killed mid-group
    assert "resume: `diad-sweep resume a+b`" in log.read_text()
    summary = runner.resume("b", str(storage), dashboard=False)  # a member's id resumes the whole group
    assert summary["sweep_id"] == "a+b" and summary["sweeps"] == ["a", "b"] and summary["errored"] == 0
    for s in "ab":
        df = _rows(storage, s)
        assert df["run_key"].nunique() == 2 and df.groupby(["run_key", "category"]).size().max() == 1
        assert (df["status"] == "ok").all() and runner.sweep_status(s, str(storage))["pending"] == 0
    # each training ran once in all (a retried one resumed from its checkpoint, not from 0)
    assert all(_lines(p)[0] == "0" for p in (storage / "cache").glob("train/*/starts.txt"))
    assert len(list((storage / "cache").glob("train/*/starts.txt"))) == 2


def test_bad_input_is_one_line(tmp_path):
    a, b = _write(tmp_path, {k: SPECS[k] for k in "ab"})
    assert group.split_args([a, "train.steps=3", b]) == ([a, b], ["train.steps=3"])
    with pytest.raises(DiadError, match="no sweep spec given"):
        group.split_args(["train.steps=3"])
    storage = str(tmp_path / "runs")
    with pytest.raises(DiadError, match=r"a\.yaml and .*a\.yaml: both are sweep 'a'"):
        runner.launch([a, a], storage=storage, backend=FAKE)
    with pytest.raises(DiadError, match="both are sweep 'x'.*a name= override"):
        runner.launch([a, b], ["name=x"], storage=storage, backend=FAKE)
    with pytest.raises(DiadError, match=r"^.*b\.yaml: command line: eval.forward_steps is swept"):
        runner.launch([a, b], ["eval.forward_steps=10"], storage=storage, backend=FAKE)
    with pytest.raises(DiadError, match="name 'cache' is reserved"):
        runner.launch([a], ["name=cache"], storage=storage, backend=FAKE)
    optuna = _write(tmp_path, {"o": "name: o\nbase: {}\naxes: {train.lr: {uniform: [0.1, 0.2]}}\n"
                                     "search: {algorithm: optuna}\n"})[0]
    with pytest.raises(DiadError, match=r"o\.yaml: search.algorithm optuna: only grid sweeps share one launch"):
        runner.launch([a, optuna], storage=storage, backend=FAKE)
    with pytest.raises(DiadError, match="no sweep or sweep group there"):
        runner.resume("a+b", storage)
    runner.write_meta(storage, "a", {"experiment": "a+gone", "spec": {}, "backend": "x:y", "cache_dir": storage})
    with pytest.raises(DiadError, match=r"sweep a was launched in group a\+gone, but .*group.json is missing"):
        runner.resume("a", storage)
    result = CliRunner().invoke(main, ["launch", a, a, "--storage", storage])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "both are sweep 'a'" in result.output
    result = CliRunner().invoke(main, ["resume", "nope", "--storage", storage])
    assert result.exit_code == 2 and "no sweep or sweep group there" in result.output

"""The bad-input and fault corpus of issue 14, one test per case: no silent wrong number, no traceback.

Every case ends in a one-line error (exit 2 from the CLIs), a refusal before any training, or a correct result.
"""

import errno
import json
import math
import os
import shutil
import stat
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file, save_file

from diad import checkpoint as ckpt
from diad import pipeline
from diad.cli import cli
from diad.config import build_run_config
from diad.data import write_synth_dataset
from diad.data.dataset import load_image, load_mask
from diad.errors import DiadError
from diad.integrity import clean_stale_temps
from diad.io import host_id
from test_train import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
EVAL = {"ddim_steps": 2, "batch_size": 4, "forward_steps": 50, "num_threads": 1}


@pytest.fixture(scope="module", autouse=True)
def diad_cache(tmp_path_factory):
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIAD_CACHE", str(tmp_path_factory.mktemp("diad_cache")))
        yield
    torch.set_num_threads(threads)


def _cfg(root, **eval_over):
    return build_run_config({"data": {"root": str(root), "val_fraction": 0.2}, "model": TINY_MODEL,
                             "train": {"steps": 1, "batch_size": 2, "autoencoder": {"steps": 1, "batch_size": 2},
                                       "checkpoint_every": 1, "num_threads": 1},
                             "eval": {**EVAL, **eval_over}})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run (2 categories x (6 train, 4 test) at 64 px, 1 AE step, 1 denoiser step); copied per test."""
    tmp = tmp_path_factory.mktemp("integrity")
    root = write_synth_dataset(tmp / "synth", ["brick", "elpv_mono"], 6, 4, 64, 0)
    result = pipeline.train(_cfg(root), tmp / "run", cache_dir=tmp / "cache", progress=False)
    return root, result.checkpoint_dir, tmp


@pytest.fixture
def run_copy(trained, tmp_path):
    """A private copy of the trained checkpoint directory (tests damage it)."""
    root, checkpoint, _ = trained
    dst = tmp_path / "ckpt"
    shutil.copytree(checkpoint, dst)
    return root, dst


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(res, *fragments, code=2):
    """The CLI printed exactly one `error:` line (no traceback) holding every fragment."""
    assert res.exit_code == code, res.output
    errors = [ln for ln in res.output.strip().splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output
    for f in fragments:
        assert f in errors[0], errors[0]
    return errors[0]


def _evaluate(checkpoint, cache):
    return invoke("evaluate", checkpoint, "--out", cache.parent / "eval", "--cache-dir", cache, "--no-progress",
                  *[f"eval.{k}={v}" for k, v in EVAL.items()])


# ---- 1. integrity by content -----------------------------------------------------------------------

def _overwrite_tensor_bytes(path: Path, fill: bytes) -> None:
    """Overwrite the tensor data of a safetensors file, header intact (the corpus's damaged checkpoint)."""
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header:] = (fill * (len(data) - header))[:len(data) - header]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("cache_state", ["old_cache", "fresh_cache"])
def test_tensor_bytes_overwritten_is_refused_not_scored(run_copy, tmp_path, cache_state):
    root, checkpoint = run_copy
    cache = tmp_path / "cache"
    if cache_state == "old_cache":
        assert _evaluate(checkpoint, cache).exit_code == 0  # the intact run, cached
    _overwrite_tensor_bytes(checkpoint / "model.safetensors", b"\xff\xff\xc0\x7f")  # NaN floats
    line = one_line_error(_evaluate(checkpoint, cache), "model.safetensors", "sha256", "delete")
    assert "recorded" in line


def test_nan_weights_with_a_matching_hash_are_refused(run_copy):
    _, checkpoint = run_copy
    tensors = load_file(str(checkpoint / "model.safetensors"))
    tensors = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(tensors, str(checkpoint / "model.safetensors"))
    state = json.loads((checkpoint / "state.json").read_text())
    state["weights_sha256"] = ckpt.file_sha256(checkpoint / "model.safetensors")  # a "consistent" bad file
    (checkpoint / "state.json").write_text(json.dumps(state))
    with pytest.raises(DiadError, match="NaN or inf"):
        pipeline.load_trained(checkpoint)


@pytest.mark.parametrize("damage", ["truncated", "header_tampered"])
def test_damaged_safetensors_is_one_line(run_copy, tmp_path, damage):
    _, checkpoint = run_copy
    f = checkpoint / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\xff" * 8 + data[8:])
    one_line_error(_evaluate(checkpoint, tmp_path / "cache"), "model.safetensors")
    # also when state.json is rewritten to match the damaged bytes: the reader's error, as one line
    state = json.loads((checkpoint / "state.json").read_text())
    state["weights_sha256"] = ckpt.file_sha256(f)
    (checkpoint / "state.json").write_text(json.dumps(state))
    one_line_error(_evaluate(checkpoint, tmp_path / "cache"), "model.safetensors", "not a readable safetensors")


@pytest.mark.parametrize("name", ["state.json", "config.json"])
def test_checkpoint_json_that_is_not_json_is_one_line(run_copy, tmp_path, name):
    _, checkpoint = run_copy
    (checkpoint / name).write_text('{"step": 1, "trunc')
    one_line_error(_evaluate(checkpoint, tmp_path / "cache"), name, "not valid JSON")


def test_damaged_reconstruction_cache_entry_is_refused(run_copy, tmp_path):
    _, checkpoint = run_copy
    cache = tmp_path / "cache"
    assert _evaluate(checkpoint, cache).exit_code == 0
    (entry,) = (cache / "recon").iterdir()
    _overwrite_tensor_bytes(entry / "recons.safetensors", b"\x00")  # all-black cached reconstructions
    one_line_error(_evaluate(checkpoint, cache), "recons.safetensors", "delete the cache entry")


def test_damaged_autoencoder_cache_entry_is_refused(trained, tmp_path):
    root, _, tmp = trained
    cache = tmp_path / "cache"
    shutil.copytree(tmp / "cache", cache)
    (entry,) = [p for p in (cache / "autoencoders").iterdir() if p.is_dir()]
    _overwrite_tensor_bytes(entry / "model.safetensors", b"\x01\x02")
    with pytest.raises(DiadError, match="autoencoders.*sha256"):
        pipeline.train(_cfg(root), tmp_path / "run", cache_dir=cache, progress=False)


# ---- 2. images and masks by their real bit depth and mode ---------------------------------------------

GREY = np.linspace(0, 1, 16 * 16).reshape(16, 16)


def _image(mode: str) -> tuple[Image.Image, np.ndarray]:
    """A 16x16 test image of `mode` and the [0,1] grey (or RGB) it must decode to."""
    if mode in ("I;16", "I;16B"):
        a = np.round(GREY * 65535).astype(np.uint16)
        im = Image.fromarray(a) if mode == "I;16" else Image.frombytes("I;16B", (16, 16), a.astype(">u2").tobytes())
        return im, a / 65535
    if mode == "I":
        a = np.round(GREY * 65535).astype(np.int32)
        return Image.fromarray(a), a / 65535
    if mode == "F":
        return Image.fromarray(GREY.astype(np.float32)), GREY.astype(np.float32)
    if mode == "1":
        a = GREY > 0.5
        return Image.fromarray(a), a.astype(float)
    rgb = np.stack([GREY, GREY[::-1], np.full_like(GREY, 0.25)], axis=2)
    u8 = np.round(rgb * 255).astype(np.uint8)
    if mode == "RGBA":
        return Image.fromarray(np.dstack([u8, np.full((16, 16), 128, np.uint8)])), u8 / 255
    if mode == "LA":
        g = u8[..., 0]
        return Image.fromarray(np.dstack([g, np.full((16, 16), 7, np.uint8)])), g / 255
    if mode == "P":
        im = Image.fromarray(u8).quantize(16)
        return im, np.asarray(im.convert("RGB")) / 255
    if mode == "CMYK":
        im = Image.fromarray(u8).convert("CMYK")
        return im, np.asarray(im.convert("RGB")) / 255
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "F", "P", "RGBA", "LA", "CMYK", "1"])
def test_image_modes_decode_to_their_real_values(tmp_path, mode):
    im, want = _image(mode)
    path = tmp_path / f"x.{'tif' if mode in ('I;16B', 'I', 'F', 'CMYK') else 'png'}"
    im.save(path)
    assert Image.open(path).mode == mode  # the file really holds that mode
    x, wh = load_image(path, 16)
    want = np.repeat(want[..., None], 3, axis=2) if want.ndim == 2 else want
    assert wh == (16, 16) and x.shape == (3, 16, 16)
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), want, atol=1 / 255)
    assert x.min() >= 0 and x.max() <= 1 and float(x.std()) > 0.05  # not all white (16-bit clipped) or black


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "F", "P", "L", "RGBA", "LA", "1", "RGB"])
def test_masks_of_every_mode_mark_any_nonzero_value(tmp_path, mode):
    a = np.zeros((16, 16), np.uint8)
    a[2:5, 3:7] = 1  # a value of 1: kept by the rule "any non-zero is defect", also at 16 bits
    if mode == "I;16":
        im = Image.fromarray(a.astype(np.uint16))
    elif mode == "I;16B":
        im = Image.frombytes("I;16B", (16, 16), a.astype(">u2").tobytes())
    elif mode == "I":
        im = Image.fromarray(a.astype(np.int32))
    elif mode == "F":
        im = Image.fromarray(a.astype(np.float32))
    elif mode == "P":
        im = Image.frombytes("P", (16, 16), a.tobytes())
        im.putpalette([0, 0, 0, 255, 255, 255])
    elif mode in ("RGB", "RGBA"):
        im = Image.fromarray(np.dstack([a * 0, a * 0, a] + ([np.full_like(a, 255)] if mode == "RGBA" else [])))
    elif mode == "LA":
        im = Image.fromarray(np.dstack([a, np.full_like(a, 255)]))
    elif mode == "1":
        im = Image.fromarray(a.astype(bool))
    else:
        im = Image.fromarray(a, mode="L")
    path = tmp_path / f"m.{'tif' if mode in ('I;16B', 'I', 'F') else 'png'}"
    im.save(path)
    assert Image.open(path).mode == mode  # the file really holds that mode
    m = load_mask(path, 16, path, (16, 16))
    np.testing.assert_array_equal(m[0].numpy(), a.astype(np.float32))


def test_16bit_training_images_are_not_white(tmp_path):
    """The corpus case: a 16-bit PNG dataset used to decode as all white (I;16 -> RGB clips)."""
    a = (np.indices((32, 32)).sum(0) * 1000).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "x.png")
    x, _ = load_image(tmp_path / "x.png", 32)
    assert float(x.mean()) < 0.6 and float(x.min()) == 0.0


# ---- 3. pixel metrics per category ----------------------------------------------------------------------

def test_a_category_without_masks_does_not_blank_the_others(run_copy, tmp_path):
    root, checkpoint = run_copy
    data = tmp_path / "data"
    shutil.copytree(root, data)
    gt = data / "brick" / "ground_truth"
    shutil.rmtree(gt / sorted(p.name for p in gt.iterdir())[0])  # one defect folder without ground_truth/
    res = invoke("evaluate", checkpoint, f"data.root={data}", "--out", tmp_path / "eval", "--cache-dir",
                 tmp_path / "cache", "--no-progress", *[f"eval.{k}={v}" for k, v in EVAL.items()])
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and "brick" in warnings[0] and "ground-truth masks" in warnings[0]
    rows = {r["category"]: r for r in pq.read_table(tmp_path / "eval" / "metrics.parquet").to_pylist()}
    assert math.isnan(rows["brick"]["pixel_auroc"]) and "no ground-truth masks" in rows["brick"]["pixel_metrics_note"]
    assert math.isfinite(rows["elpv_mono"]["pixel_auroc"]) and rows["elpv_mono"]["pixel_metrics_note"] is None
    assert math.isfinite(rows["elpv_mono"]["pixel_aupro"]) and rows["mean"]["pixel_metrics_note"]


def test_a_test_split_without_good_images_is_a_clear_error(run_copy, tmp_path):
    root, checkpoint = run_copy
    data = tmp_path / "data"
    shutil.copytree(root, data)
    shutil.rmtree(data / "elpv_mono" / "test" / "good")
    res = invoke("evaluate", checkpoint, f"data.root={data}", "--out", tmp_path / "eval", "--cache-dir",
                 tmp_path / "cache", "--no-progress")
    one_line_error(res, "elpv_mono", "no normal (good) images")
    assert not (tmp_path / "cache" / "recon").exists()  # refused before reconstructing


# ---- 4. validation before any training ---------------------------------------------------------------

@pytest.fixture
def config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {profile: cpu}\ntrain: {steps: 1}\n")
    return path


@pytest.mark.parametrize("override, fragment", [
    ("eval.backbone=resnet999", "unknown backbone 'resnet999'"),
    ("eval.layers=[1,5]", "eval.layers"),
    ("eval.ddim_steps=20", "ddim_steps <= forward_steps"),
    ("eval.backbone=resnet18", "has no local weights"),
])
def test_train_refuses_bad_eval_settings_before_training(config, tmp_path, override, fragment):
    extra = ["eval.forward_steps=10"] if "ddim" in override else []
    res = invoke("train", config, override, *extra, "--out", tmp_path / "out")
    one_line_error(res, fragment, str(config))
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


@pytest.mark.parametrize("text, fragment", [
    ("", "empty config"),
    ("# only a comment\n\n", "empty config"),
    ("{}\n", "empty config"),
    ("train: {steps: 1}\ntrain: {steps: 2}\n", "duplicate key 'train'"),
    ("model: {profile: cpu}\ntrain:\n  steps: 1\n  steps: 5\n", "duplicate key 'steps'"),
])
def test_empty_configs_and_duplicate_keys_are_refused(tmp_path, text, fragment):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    one_line_error(invoke("train", path, "--out", tmp_path / "out"), fragment, str(path))


def test_a_binary_file_as_config_is_one_line(tmp_path):
    path = tmp_path / "weights.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(64))
    one_line_error(invoke("train", path, "--out", tmp_path / "out"), "binary file", str(path))


SWEEP = """\
name: t
base:
  data: {image_size: 64}
  train: {steps: 1}
arms:
  - {name: a, model.variant: ldm}
  - {name: b, model.variant: diad}
"""


def _sweep_error(tmp_path, text, *cli):
    from diad.sweep.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text))
    res = CliRunner().invoke(main, ["launch", str(path), "--storage", str(tmp_path / "runs"), "--no-dashboard",
                                    *cli])
    line = one_line_error(res)
    assert not (tmp_path / "runs" / "t").exists()  # refused before anything ran or was written
    return line


@pytest.mark.parametrize("axes, fragment", [
    ("axes:\n  eval.backbone: [efficientnet_lite0, resnet999]\n", "unknown backbone 'resnet999'"),
    ("axes:\n  eval.ddim_steps: [5, 50]\nbase_eval: x\n", None),
    ("axes:\n  eval.layers: [[1, 2], [1, 5]]\n", "eval.layers"),
])
def test_sweep_refuses_bad_eval_axes_before_training(tmp_path, axes, fragment):
    if fragment is None:  # ddim_steps 50 > forward_steps 20 in one grid point
        text = SWEEP.replace("train: {steps: 1}", "train: {steps: 1}\n  eval: {forward_steps: 20}")
        line = _sweep_error(tmp_path, text + "axes:\n  eval.ddim_steps: [5, 50]\n")
        assert "s.yaml:" in line and "ddim_steps <= forward_steps" in line
        return
    line = _sweep_error(tmp_path, SWEEP + axes)
    assert "s.yaml:" in line and fragment in line


def test_sweep_refuses_two_arms_with_one_name(tmp_path):
    text = SWEEP.replace("{name: b, model.variant: diad}", "{name: a, model.variant: diad}")
    assert "'a' is also the name of arms[0]" in _sweep_error(tmp_path, text)


def test_sweep_refuses_two_arms_that_are_one_run(tmp_path):
    text = SWEEP.replace("{name: b, model.variant: diad}", "{name: b, model.variant: ldm}")
    assert "resolve to the same run" in _sweep_error(tmp_path, text)


@pytest.mark.parametrize("n", [0, -1])
def test_num_cpus_below_one_trial_is_refused_not_a_hang(tmp_path, n):
    assert "--num-cpus" in _sweep_error(tmp_path, SWEEP, "--num-cpus", str(n))


def test_duplicate_key_in_a_sweep_spec_is_refused(tmp_path):
    assert "duplicate key 'name'" in _sweep_error(tmp_path, SWEEP + "name: u\n")


def test_empty_sweep_spec_is_refused(tmp_path):
    assert "empty sweep spec" in _sweep_error(tmp_path, "\n# nothing\n")


# ---- 5. failed trials counted and visible -------------------------------------------------------------

class _Result:
    def __init__(self, label, status=None, error=None, tune_error=None):
        self.config = {"point": {"label": label}}
        self.metrics = {"status": status, "error": error}
        self.error = tune_error


def test_failed_trials_are_counted_named_and_exit_nonzero(capsys):
    from diad.sweep.cli import _print_summary
    from diad.sweep.runner import failed_trials

    grid = [_Result("a", "ok"), _Result("b", "failed", "DiadError: eval.backbone: boom"),
            _Result("c", tune_error=RuntimeError("worker died\nline 2"))]
    failed = failed_trials(grid)
    assert [f["trial"] for f in failed] == ["b", "c"] and failed[1]["error"] == "worker died line 2"
    with pytest.raises(SystemExit) as info:
        _print_summary({"ran": 3, "errored": 1, "failed": 2, "failed_trials": failed})
    err = capsys.readouterr().err
    assert info.value.code == 1 and "trial failed: b: DiadError: eval.backbone: boom" in err
    assert "2 of 3 trials failed" in err


# ---- 6. I/O faults: one line, nothing half-written, leftovers cleaned ------------------------------------

def test_out_naming_an_existing_file_is_one_line(run_copy, tmp_path):
    _, checkpoint = run_copy
    (tmp_path / "afile").write_text("x")
    one_line_error(invoke("evaluate", checkpoint, "--out", tmp_path / "afile"), "afile", "is a file")
    one_line_error(invoke("evaluate", checkpoint, "--out", tmp_path / "afile" / "sub"), "not a directory")


def test_storage_naming_an_existing_file_is_one_line(tmp_path):
    from diad.sweep.cli import main

    (tmp_path / "afile").write_text("x")
    (tmp_path / "s.yaml").write_text(SWEEP)
    res = CliRunner().invoke(main, ["launch", str(tmp_path / "s.yaml"), "--storage", str(tmp_path / "afile"),
                                    "--no-dashboard"])
    one_line_error(res, "afile")


def _refuse_writes(monkeypatch, under: Path, err: int):
    """Simulate a full or read-only disk for every file opened for writing under `under` (root ignores chmod)."""
    import builtins

    real_open, real_mkstemp = builtins.open, os.open

    def fake_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax") and str(file).startswith(str(under)):
            raise OSError(err, os.strerror(err), str(file))
        return real_open(file, mode, *a, **k)

    def fake_os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and str(path).startswith(str(under)):
            raise OSError(err, os.strerror(err), str(path))
        return real_mkstemp(path, flags, *a, **k)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)


@pytest.mark.parametrize("err, fragment", [(errno.ENOSPC, "disk full"), (errno.EROFS, "read-only")])
def test_unwritable_out_is_refused_before_reconstructing(run_copy, tmp_path, monkeypatch, err, fragment):
    _, checkpoint = run_copy
    out, cache = tmp_path / "eval", tmp_path / "cache"
    _refuse_writes(monkeypatch, out, err)
    one_line_error(invoke("evaluate", checkpoint, "--out", out, "--cache-dir", cache), str(out), fragment)
    assert not (cache / "recon").exists()  # the check came first, not after minutes of work


@pytest.mark.parametrize("err, fragment", [(errno.ENOSPC, "disk full"), (errno.EROFS, "read-only")])
def test_unwritable_cache_dir_is_one_line(run_copy, tmp_path, monkeypatch, err, fragment):
    _, checkpoint = run_copy
    cache = tmp_path / "cache"
    _refuse_writes(monkeypatch, cache, err)
    one_line_error(invoke("evaluate", checkpoint, "--out", tmp_path / "eval", "--cache-dir", cache), fragment)


def test_disk_full_during_an_atomic_write_leaves_nothing(tmp_path, monkeypatch):
    from diad.io import atomic_write_text

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiadError, match="metrics.json: cannot write: no space left"):
        atomic_write_text(tmp_path / "metrics.json", "{}")
    assert list(tmp_path.iterdir()) == []  # no half-written file, no temp file


def test_unwritable_storage_is_one_line(tmp_path, monkeypatch):
    from diad.sweep.cli import main

    (tmp_path / "s.yaml").write_text(SWEEP)
    _refuse_writes(monkeypatch, tmp_path / "runs", errno.EROFS)
    res = CliRunner().invoke(main, ["launch", str(tmp_path / "s.yaml"), "--storage", str(tmp_path / "runs"),
                                    "--no-dashboard"])
    one_line_error(res, "--storage", "read-only")


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_temp_leftovers_of_killed_writes_are_cleaned(tmp_path):
    dead, me = _dead_pid(), os.getpid()
    killed = tmp_path / f".step-00000002.tmp-{dead}-{host_id()}-abc123"
    killed.mkdir()
    (killed / "model.safetensors").write_bytes(b"x" * 1000)
    half_file = tmp_path / f".metrics.json.tmp-{dead}"  # the older "<name>.tmp-<pid>" form
    half_file.write_text("{")
    live = tmp_path / f".step-00000003.tmp-{me}-{host_id()}-def456"  # a write in progress: kept
    live.mkdir()
    other_host = tmp_path / f".step-00000004.tmp-{dead}-00000000-ghi789"  # another node's: kept until old
    other_host.mkdir()
    old_legacy = tmp_path / ".step-00000005.tmp-k2j3h4"  # no pid: removed by age only
    old_legacy.mkdir()
    os.utime(old_legacy, (0, 0))
    complete = tmp_path / "step-00000001"
    complete.mkdir()
    removed = clean_stale_temps(tmp_path)
    assert set(removed) == {killed, half_file, old_legacy}
    assert live.exists() and other_host.exists() and complete.exists()


def test_training_cleans_leftovers_in_its_checkpoint_dir(trained, tmp_path):
    root, _, tmp = trained
    out = tmp_path / "run"
    shutil.copytree(tmp / "run", out)
    leftover = out / "checkpoints" / f".step-00000009.tmp-{_dead_pid()}-{host_id()}-zz"
    leftover.mkdir()
    pipeline.train(_cfg(root), out, cache_dir=tmp / "cache", progress=False)  # resumes: nothing left to train
    assert not leftover.exists()


# ---- 7. token file private; caches said and honoured ----------------------------------------------------

def test_ray_token_created_0600_and_kept_private(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    from diad.sweep import token

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "ray" / "auth_token"))
    made = token.ensure_private_token()
    assert made == tmp_path / "ray" / "auth_token" and stat.S_IMODE(made.stat().st_mode) == 0o600
    assert len(made.read_text()) >= 16 and token.ensure_private_token() is None  # never overwritten
    os.chmod(made, 0o644)  # as Ray itself writes it
    token.keep_token_private()
    assert stat.S_IMODE(made.stat().st_mode) == 0o600


def test_evaluate_writes_its_cache_under_cache_dir_and_says_where(run_copy, tmp_path):
    _, checkpoint = run_copy
    default = Path(os.environ["DIAD_CACHE"])
    before = set((default / "recon").glob("*")) if (default / "recon").exists() else set()
    res = _evaluate(checkpoint, tmp_path / "cache")
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "cache" / "recon").iterdir())) == 1
    after = set((default / "recon").glob("*")) if (default / "recon").exists() else set()
    assert after == before  # nothing under the default cache
    assert f"cache: reconstructions under {tmp_path / 'cache'}" in res.output
    res = invoke("evaluate", checkpoint, "--out", tmp_path / "eval2", "--no-progress",
                 *[f"eval.{k}={v}" for k, v in EVAL.items()])
    assert res.exit_code == 0 and f"cache: reconstructions under {default} (default" in res.output

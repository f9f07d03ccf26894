"""Trainer: checkpoint round trip, exact resume, NaN stop, configs, data order, val split."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diad import checkpoint as ckpt
from diad.config import build_run_config, load_run_config, train_hash
from diad.hashing import json_hash
from diad.errors import DiadError
from diad.models import build_model
from diad.train import denoiser
from diad.train.batches import batch_indices


# cpu-profile structure with the narrowest channels: seconds per test on a busy 2-core machine
TINY_MODEL = {"profile": "cpu", "variant": "diad",
              "autoencoder": {"block_out_channels": [8, 8, 8], "norm_num_groups": 4},
              "unet": {"block_out_channels": [8, 8, 8, 8], "layers_per_block": 1, "cross_attention_dim": 8,
                       "attention_heads": 1, "norm_num_groups": 4, "context_tokens": 2},
              "sg": {"hint_channels": [8, 8, 8]}}


@pytest.fixture(autouse=True)
def diad_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAD_CACHE", str(tmp_path / "diad_cache"))


@pytest.fixture(autouse=True)
def one_thread():
    """As pipeline.train does with train.num_threads: tiny convs are slower on 2 busy threads than on 1."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cfg(**train):
    """64 px (the smallest size where the full DiAD variant with SFF is valid), tiny channels."""
    return build_run_config({"model": TINY_MODEL,
                             "train": {"steps": 4, "batch_size": 2, "checkpoint_every": 2, "lr": 1e-3,
                                       "num_threads": 1, "keep_last": None, **train}})


def images(n, seed):
    return torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def run(cfg, out, **kw):
    torch.manual_seed(cfg.train.seed)  # the same init as pipeline.train (it seeds before build_model)
    model = build_model(cfg.model)
    return denoiser.train_denoiser(cfg, model, images(6, 1), images(2, 2), out, torch.device("cpu"),
                                   progress=False, **kw), model


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    path = ckpt.save_checkpoint(ckpt.step_dir(tmp_path, 7), net, {"a": 1}, 7, opt, {"loss": 0.5})
    net2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt2 = torch.optim.AdamW(net2.parameters(), lr=0.1)
    ckpt.load_weights(path, net2)
    ckpt.load_optimizer(path, opt2)
    for a, b in zip(net.state_dict().values(), net2.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"][0]["lr"] == s2["param_groups"][0]["lr"]
    for i in s1["state"]:
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(s1["state"][i][k], s2["state"][i][k])
    assert ckpt.read_state(path)["step"] == 7 and ckpt.read_state(path)["metrics"] == {"loss": 0.5}
    assert ckpt.read_config(path) == {"a": 1}
    (tmp_path / ".step-00000009.tmp-x").mkdir()  # an interrupted write is never "latest"
    assert ckpt.latest_checkpoint(tmp_path) == path
    h = ckpt.checkpoint_key(path)
    ckpt.save_checkpoint(ckpt.step_dir(tmp_path, 8), net, {"a": 1}, 8, opt)
    assert ckpt.checkpoint_key(ckpt.step_dir(tmp_path, 8)) == h  # same weights + config, same key
    with pytest.raises(DiadError, match="not a diad checkpoint"):
        ckpt.load_weights(tmp_path, net2)


def test_batch_order_is_a_function_of_seed_and_step():
    a = [batch_indices(10, 4, 0, s).tolist() for s in range(5)]
    assert [batch_indices(10, 4, 0, s).tolist() for s in (3, 4)] == a[3:]  # no hidden state
    first_epoch = sum(a, [])[:10]
    assert sorted(first_epoch) == list(range(10))  # each epoch is a permutation
    assert a != [batch_indices(10, 4, 1, s).tolist() for s in range(5)]


def test_resume_is_bit_identical(tmp_path):
    straight, model = run(tiny_cfg(steps=4), tmp_path / "a")
    half, _ = run(tiny_cfg(steps=2), tmp_path / "b")
    assert half.steps == 2
    resumed, _ = run(tiny_cfg(steps=4), tmp_path / "b")
    assert resumed.steps == 4 and resumed.checkpoint_dir.name == "step-00000004"
    wa = load_file(str(straight.checkpoint_dir / "model.safetensors"))
    wb = load_file(str(resumed.checkpoint_dir / "model.safetensors"))
    w0 = build_model(tiny_cfg().model).state_dict()
    changed = [k for k in wa if k.startswith("sg.") and not torch.equal(wa[k], w0[k])]
    assert changed, "training changed no SG weight: the comparison below would prove nothing"
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    oa = load_file(str(straight.checkpoint_dir / "optimizer.safetensors"))
    ob = load_file(str(resumed.checkpoint_dir / "optimizer.safetensors"))
    assert all(torch.equal(oa[k], ob[k]) for k in oa)


def test_resume_refuses_a_different_config(tmp_path):
    run(tiny_cfg(steps=2), tmp_path)
    with pytest.raises(DiadError, match="different training config"):
        run(tiny_cfg(steps=4, lr=5e-4), tmp_path)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real = denoiser.F.mse_loss
    calls = []

    def poisoned(a, b, *args, **kw):
        loss = real(a, b, *args, **kw)
        if "reduction" in kw:  # the validation loss
            return loss
        calls.append(1)
        return loss * float("nan") if len(calls) == 3 else loss  # training step index 2

    monkeypatch.setattr(denoiser.F, "mse_loss", poisoned)
    with pytest.raises(DiadError, match=r"step 2: loss is nan .*step-00000002"):
        run(tiny_cfg(steps=4, checkpoint_every=2), tmp_path)
    root = tmp_path / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step-00000002"]
    weights = load_file(str(root / "step-00000002" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_huge_lr_stops_with_a_clear_message(tmp_path):
    # lr=1e30: step 0 throws the weights to ~1e30, step 1's loss overflows; nothing non-finite is saved
    with pytest.raises(DiadError, match=r"step 1: loss is (nan|inf).*lower train.lr"):
        run(tiny_cfg(steps=2, checkpoint_every=2, lr=1e30), tmp_path)
    assert ckpt.list_checkpoints(tmp_path / "checkpoints") == []


def test_profile_defaults_and_explicit_values(tmp_path):
    cpu = build_run_config({"model": {"profile": "cpu"}})
    assert cpu.data.image_size == 64 and cpu.train.steps is not None
    paper = build_run_config({"model": {"profile": "paper"}})
    assert paper.data.image_size == 256 and paper.train.epochs == 1000 and paper.train.lr == 1e-5
    mine = build_run_config({"model": {"profile": "cpu"}, "train": {"epochs": 3, "lr": 0.5}})
    assert mine.train.epochs == 3 and mine.train.steps is None and mine.train.lr == 0.5
    assert build_run_config({"model": {"profile": "cpu", "image_size": 128}}).data.image_size == 128
    with pytest.raises(DiadError, match="image_size"):
        build_run_config({"data": {"image_size": 128}, "model": {"image_size": 64}})


def test_config_errors_name_key_file_and_allowed_values(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {profile: cpu}\ntrain: {stpes: 3}\n")
    with pytest.raises(DiadError, match=r"run.yaml: train.stpes: unknown key; allowed: steps, epochs"):
        load_run_config(path)
    path.write_text("model: {profile: cpu}\n")
    with pytest.raises(DiadError, match=r"eval.score_rule: .*'authors_pool'.*got 'best'"):
        load_run_config(path, ["eval.score_rule=best"])
    with pytest.raises(DiadError, match="unknown section 'steps'"):
        load_run_config(path, ["steps=3"])
    with pytest.raises(DiadError, match="expected key=value"):
        load_run_config(path, ["train.steps"])


def test_hashes_are_stable_and_split(tmp_path):
    a = build_run_config({"model": {"profile": "cpu"}})
    b = build_run_config({"model": {"profile": "cpu"}, "eval": {"sigma": 2.0}, "train": {"checkpoint_every": 7}})
    assert train_hash(a) == train_hash(b)  # eval and bookkeeping fields do not change the weights
    assert train_hash(a) != train_hash(build_run_config({"model": {"profile": "cpu"}, "train": {"lr": 1.0}}))
    assert json_hash({"x": 1, "y": [1, 2]}) == json_hash({"y": [1, 2], "x": 1})


def test_training_reads_only_the_train_split(tmp_path, monkeypatch):
    """Validation images come from split_train_val over normal TRAIN images; the test split is never loaded."""
    import diad.pipeline.training as pipeline

    asked, real = [], pipeline.load_samples

    def spy(cfg, split):
        asked.append(split)
        return real(cfg, split)

    monkeypatch.setattr(pipeline, "load_samples", spy)
    monkeypatch.setattr(pipeline, "train_denoiser", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("stop")))
    root = tmp_path / "synth"
    from diad.data import write_synth_dataset

    write_synth_dataset(root, ["brick"], 4, 2, 64, 0)
    cfg = build_run_config({"data": {"root": str(root)}, "model": {"profile": "cpu"}, "train": {"autoencoder": {"steps": 0}}})
    with pytest.raises(RuntimeError, match="stop"):
        pipeline.train(cfg, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    assert asked == ["train"]


def _leaf_paths(model_cls, prefix=()):
    """Every leaf field path of a pydantic config class."""
    out = []
    for name, field in model_cls.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            out += _leaf_paths(sub, prefix + (name,))
        else:
            out.append(prefix + (name,))
    return out


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    if isinstance(value, list):
        return value[:-1] + [value[-1] + 8]  # same number of levels, so the config stays valid
    return f"{value}-other" if value is not None else "x"


def test_autoencoder_key_covers_exactly_what_shapes_the_autoencoder():
    """Every field of model.autoencoder and train.autoencoder changes the key (the old prefix rule missed
    norm_num_groups); the denoiser's settings do not."""
    from diad.config import AutoencoderTrainConfig, autoencoder_part
    from diad.models.config import AutoencoderConfig
    from diad.overrides import apply_overrides

    base = build_run_config({"model": {"profile": "cpu"}})
    raw = base.model_dump(mode="json")
    key = json_hash(autoencoder_part(base))
    shaping = [("model", "autoencoder") + p for p in _leaf_paths(AutoencoderConfig)]
    shaping += [("train", "autoencoder") + p for p in _leaf_paths(AutoencoderTrainConfig)]
    shaping += [("model", "image_size"), ("data", "split_seed"), ("data", "val_fraction")]
    for path in shaping:
        value = raw
        for part in path:
            value = value[part]
        new = 0.5 if path[-1] == "val_fraction" else 128 if path[-1] == "image_size" else _changed(value)
        if path == ("train", "autoencoder", "seed"):
            new = 7  # the cpu profile fixes it at 0
        sets = {".".join(path): new}
        if path == ("model", "image_size"):
            sets["data.image_size"] = new  # one value in two places (they must agree)
        cfg = build_run_config(apply_overrides(raw, sets))
        assert json_hash(autoencoder_part(cfg)) != key, f"{'.'.join(path)} shapes the autoencoder but not its key"
    not_shaping = {"model.unet.norm_num_groups": 4, "model.unet.block_out_channels": [16, 32, 72],
                   "model.sg.sff": "bn_relu", "train.lr": 0.1, "train.steps": 3, "train.t_max": 300,
                   "eval.sigma": 1.0, "model.variant": "ldm",
                   "train.seed": 5}  # the cpu profile's autoencoder stage has its own seed (0)
    for dotted, value in not_shaping.items():
        cfg = build_run_config(apply_overrides(raw, {dotted: value}))
        assert json_hash(autoencoder_part(cfg)) == key, f"{dotted} does not shape the autoencoder"


def test_autoencoder_builder_reads_only_its_own_sub_config():
    """build_autoencoder takes model.autoencoder, the image size and a weights path: nothing else can shape it."""
    import inspect

    from diad.models.diad_model import build_autoencoder

    assert list(inspect.signature(build_autoencoder).parameters) == ["cfg", "image_size", "weights"]


def test_t_max_bounds_the_training_timesteps():
    from diad.models import make_scheduler

    z0 = torch.zeros(256, 4, 2, 2)
    _, t, _ = denoiser._noisy_batch(make_scheduler(), z0, torch.Generator().manual_seed(0), t_max=50)
    assert int(t.max()) <= 49 and int(t.max()) >= 40  # 256 draws reach near the bound
    _, t, _ = denoiser._noisy_batch(make_scheduler(), z0, torch.Generator().manual_seed(0))
    assert int(t.max()) > 900  # default: every training step
    assert build_run_config({"model": {"profile": "paper"}}).train.t_max == 1000  # the paper keeps uniform t


def test_autoencoder_seed_shares_one_autoencoder_across_denoiser_seeds():
    from diad.config import autoencoder_part

    def key(seed, ae_seed="profile"):
        train = {"seed": seed} | ({} if ae_seed == "profile" else {"autoencoder": {"seed": ae_seed}})
        return json_hash(autoencoder_part(build_run_config({"model": {"profile": "cpu"}, "train": train})))

    assert key(0) == key(1)  # the cpu profile fixes train.autoencoder.seed = 0
    assert key(0, None) != key(1, None)  # None: the autoencoder follows train.seed
    assert key(0, None) == key(3, 0)  # the same effective seed is the same autoencoder

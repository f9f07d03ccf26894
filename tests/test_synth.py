"""The synthetic-defect set: exact masks, MVTec layout read back intact, determinism, cached default set."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from diad.data import (DEFECT_TYPES, AnomalyDataset, DataConfig, ensure_default_dataset, load_samples,
                       write_synth_dataset)
from diad.data.mvtec import load_mvtec
from diad.data.perlin import perlin_noise
from diad.data.synth import _texture_crop, synth_category
from diad.data.synth_defects import draw_defect
from diad.errors import DiadError

SIZE = 64


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_defect_changes_only_inside_its_mask(kind):
    rng = np.random.default_rng(3)
    img = _texture_crop("gravel", SIZE, rng)
    out, mask = draw_defect(kind, img, rng, lambda r: _texture_crop("brick", SIZE, r))
    assert mask.dtype == bool and mask.shape == img.shape
    assert 4 <= mask.sum() < 0.5 * mask.size
    np.testing.assert_array_equal(out[~mask], img[~mask])
    changed = np.abs(out - img) > 2 / 255
    assert changed[mask].mean() > 0.5, f"{kind}: only {changed[mask].mean():.2f} of the mask changed"


def test_perlin_noise_shape_range_and_seed():
    a = perlin_noise((40, 56), (2, 4), np.random.default_rng(0))
    b = perlin_noise((40, 56), (2, 4), np.random.default_rng(0))
    assert a.shape == (40, 56) and np.abs(a).max() <= 1.5 and a.std() > 0.05
    np.testing.assert_array_equal(a, b)


def test_synth_reads_back_as_mvtec_with_masks_intact(tmp_path):
    cats = ["brick", "elpv_mono"]
    out = write_synth_dataset(tmp_path / "synth", categories=cats, train_per_category=3, test_per_category=10,
                              size=SIZE, seed=1)
    train, test = load_mvtec(out, "train"), load_mvtec(out, "test")
    assert len(train) == 6 and len(test) == 20
    assert {s.category for s in test} == set(cats)
    defective = [s for s in test if s.label == 1]
    assert len(defective) == 10 and {s.defect for s in defective} == set(DEFECT_TYPES)
    assert all(s.mask_path is None for s in train + test if s.label == 0)
    assert all(s.mask_path is not None for s in defective)

    generated = dict(synth_category("brick", 3, 10, SIZE, 1))
    ds = AnomalyDataset([s for s in defective if s.category == "brick"], SIZE)
    for item, s in zip(ds, ds.samples):
        expected = generated[f"ground_truth/{s.defect}/{s.image_path.stem}_mask.png"] > 0
        assert torch.equal(item["mask"][0].bool(), torch.from_numpy(expected))
        assert item["mask"].sum() > 0 and item["label"] == 1
        image = generated[f"test/{s.defect}/{s.image_path.name}"]
        assert torch.allclose(item["image"][0], torch.from_numpy(image).float() / 255)


def test_synth_is_deterministic(tmp_path):
    kw = dict(categories=["grass", "elpv_poly"], train_per_category=2, test_per_category=6, size=SIZE)
    a = _digests(write_synth_dataset(tmp_path / "a", seed=5, **kw))
    b = _digests(write_synth_dataset(tmp_path / "b", seed=5, **kw))
    c = _digests(write_synth_dataset(tmp_path / "c", seed=6, **kw))
    assert a == b and len(a) == 2 * (2 + 6 + 3)
    assert a != c


def test_synth_refuses_bad_arguments(tmp_path):
    with pytest.raises(DiadError, match="wood"):
        write_synth_dataset(tmp_path / "x", categories=["wood"], size=SIZE)
    with pytest.raises(DiadError, match="size=60"):
        write_synth_dataset(tmp_path / "x", size=60)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(DiadError, match="full"):
        write_synth_dataset(tmp_path / "full", categories=["brick"], size=SIZE)
    assert (tmp_path / "full" / "keep.txt").exists()


def test_default_dataset_is_generated_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAD_CACHE", str(tmp_path / "cache"))
    cfg = DataConfig(synth_train_per_category=2, synth_test_per_category=2, synth_image_size=32, image_size=32)
    path = ensure_default_dataset(cfg)
    assert path.parent == tmp_path / "cache" and path.name.startswith("synth-")
    stamp = (path / "synth.json").stat().st_mtime_ns
    assert ensure_default_dataset(cfg) == path and (path / "synth.json").stat().st_mtime_ns == stamp
    assert ensure_default_dataset(cfg.model_copy(update={"synth_seed": 1})) != path
    train = load_samples(cfg, "train")
    assert len(train) == 10 and {s.image_path.parent.parent.parent.parent for s in train} == {path}

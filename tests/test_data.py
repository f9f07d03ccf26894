"""Loaders (MVTec, VisA, folder, ELPV), the torch dataset, splits, config, and every bad-input error."""

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from diad.data import (MASK_RULE, AnomalyDataset, DataConfig, Sample, has_pixel_masks, imagenet_normalize,
                       load_samples, split_train_val)
from diad.errors import DiadError


def _png(path, size=(32, 32), value=None, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) if value is None \
        else np.full((size[1], size[0]), value, np.uint8)
    Image.fromarray(a).save(path)
    return path


def _mask(path, size=(32, 32), box=(8, 8, 20, 16)):
    a = np.zeros((size[1], size[0]), np.uint8)
    a[box[1] : box[3], box[0] : box[2]] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


def _mvtec(root, cats=("bottle", "screw"), n_train=3):
    for c, cat in enumerate(cats):
        for i in range(n_train):
            _png(root / cat / "train" / "good" / f"{i:03d}.png", seed=10 * c + i)
        _png(root / cat / "test" / "good" / "000.png")
        _png(root / cat / "test" / "crack" / "000.png")
        _mask(root / cat / "ground_truth" / "crack" / "000_mask.png")
    return root


def test_mvtec_loader_multiclass_and_subset(tmp_path):
    root = _mvtec(tmp_path / "mv")
    train = load_samples(DataConfig(format="mvtec", root=root), "train")
    test = load_samples(DataConfig(format="mvtec", root=root), "test")
    assert len(train) == 6 and {s.category for s in train} == {"bottle", "screw"}
    assert all(s.label == 0 and s.defect == "good" and s.split == "train" for s in train)
    assert len(test) == 4 and sum(s.label for s in test) == 2
    crack = next(s for s in test if s.defect == "crack")
    assert crack.mask_path == root / crack.category / "ground_truth" / "crack" / "000_mask.png"
    assert has_pixel_masks(test) and not has_pixel_masks(train)
    only = load_samples(DataConfig(format="mvtec", root=root, categories=["screw"]), "train")
    assert len(only) == 3 and {s.category for s in only} == {"screw"}


def test_dataset_items_shapes_values_and_mask_rule(tmp_path):
    img = _png(tmp_path / "a.png", size=(48, 40))
    mask = _mask(tmp_path / "a_mask.png", size=(48, 40), box=(0, 0, 24, 40))  # left half
    ds = AnomalyDataset([Sample(img, mask, 1, "c", "crack", "test"),
                         Sample(_png(tmp_path / "b.png", value=7), None, 0, "c", "good", "test")], 32)
    a, b = ds[0], ds[1]
    assert a["image"].shape == (3, 32, 32) and a["image"].dtype == torch.float32
    assert 0.0 <= a["image"].min() and a["image"].max() <= 1.0
    assert a["mask"].shape == (1, 32, 32) and set(a["mask"].unique().tolist()) == {0.0, 1.0}
    assert a["mask"][0, :, :16].all() and not a["mask"][0, :, 16:].any()
    assert a["label"] == 1 and a["category"] == "c" and a["path"] == str(img)
    assert b["mask"].sum() == 0 and torch.allclose(b["image"], torch.full((3, 32, 32), 7 / 255))
    assert "nearest" in MASK_RULE and "> 0" in MASK_RULE


def test_imagenet_normalize():
    x = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    assert torch.allclose(imagenet_normalize(x), torch.zeros(2, 3, 4, 4), atol=1e-6)
    assert torch.allclose(imagenet_normalize(torch.ones(1, 3, 2, 2))[0, 0], torch.full((2, 2), (1 - 0.485) / 0.229))


def test_split_train_val_stratified_deterministic(tmp_path):
    samples = [Sample(tmp_path / f"{c}{i}.png", None, 0, c, "good", "train") for c in "ab" for i in range(10)]
    train, val = split_train_val(samples, 0.2, seed=0)
    assert len(val) == 4 and sorted(s.category for s in val) == ["a", "a", "b", "b"]
    assert set(train).isdisjoint(val) and len(train) + len(val) == 20
    assert split_train_val(samples, 0.2, seed=0) == (train, val)
    assert split_train_val(samples, 0.2, seed=1)[1] != val
    assert split_train_val(samples, 0.0, seed=0) == (samples, [])
    with pytest.raises(DiadError, match="training samples only"):
        split_train_val([Sample(tmp_path / "t.png", None, 0, "a", "good", "test")], 0.1, 0)


def test_elpv_split_sizes_no_overlap():
    cfg = DataConfig(format="elpv")
    train, test = load_samples(cfg, "train"), load_samples(cfg, "test")
    count = lambda xs, cat, label: sum(1 for s in xs if s.category == cat and s.label == label)  # noqa: E731
    # labels.csv: mono 588 normal / 313 defective, poly 920 / 402; train = round(0.8 * normals)
    assert (count(train, "mono", 0), count(train, "poly", 0)) == (470, 736)
    assert (count(test, "mono", 0), count(test, "poly", 0)) == (118, 184)
    assert (count(test, "mono", 1), count(test, "poly", 1)) == (313, 402)
    assert {s.image_path for s in train}.isdisjoint({s.image_path for s in test})
    assert all(s.mask_path is None for s in test) and not has_pixel_masks(test)
    assert load_samples(cfg, "train") == train  # fixed seed: same split every time
    uncertain = load_samples(cfg.model_copy(update={"elpv_keep_uncertain": True}), "test")
    assert len(uncertain) == len(test) + 117 + 56 + 178 + 50
    item = AnomalyDataset(test[:1], 64)[0]
    assert item["image"].shape == (3, 64, 64) and torch.equal(item["image"][0], item["image"][1])


def test_visa_loader(tmp_path):
    root = tmp_path / "visa"
    for name in ("n0", "n1", "n2", "a0"):
        _png(root / "candle" / "Data" / "Images" / f"{name}.JPG", size=(40, 32))
    m = np.zeros((32, 40), np.uint8)
    m[4:9, 4:9] = 1  # VisA masks hold class indices, not 255
    (root / "candle" / "Data" / "Masks").mkdir(parents=True)
    Image.fromarray(m).save(root / "candle" / "Data" / "Masks" / "a0.png")
    (root / "split_csv").mkdir()
    (root / "split_csv" / "1cls.csv").write_text(
        "object,split,label,image,mask\n"
        "candle,train,normal,candle/Data/Images/n0.JPG,\n"
        "candle,train,normal,candle/Data/Images/n1.JPG,\n"
        "candle,test,normal,candle/Data/Images/n2.JPG,\n"
        "candle,test,anomaly,candle/Data/Images/a0.JPG,candle/Data/Masks/a0.png\n")
    cfg = DataConfig(format="visa", root=root)
    train, test = load_samples(cfg, "train"), load_samples(cfg, "test")
    assert len(train) == 2 and [s.label for s in test] == [0, 1]
    item = AnomalyDataset(test, 40)[1]
    # 5 columns; rows 4..8 of 32 become output rows 5..10 of 40 under nearest resampling
    assert item["mask"].sum() == 5 * 6 and item["mask"][0, 5:11, 4:9].all() and item["label"] == 1
    with pytest.raises(DiadError, match="pcb1.*available: candle"):
        load_samples(cfg.model_copy(update={"categories": ["pcb1"]}), "test")


def test_folder_loader(tmp_path):
    root = tmp_path / "widgets"
    for i in range(10):
        _png(root / "good" / f"{i}.png", seed=i)
    _png(root / "bad" / "x.png")
    _mask(root / "masks" / "x_mask.png")
    cfg = DataConfig(format="folder", root=root, normal_dir="good", abnormal_dir="bad", mask_dir="masks")
    train, test = load_samples(cfg, "train"), load_samples(cfg, "test")
    assert len(train) == 8 and len(test) == 3 and {s.category for s in test} == {"widgets"}
    assert {s.image_path for s in train}.isdisjoint({s.image_path for s in test})
    assert [s.mask_path for s in test if s.label == 1] == [root / "masks" / "x_mask.png"]
    assert load_samples(cfg.model_copy(update={"split_seed": 3}), "train") != train
    (root / "masks" / "x_mask.png").unlink()
    with pytest.raises(DiadError, match="x.png"):
        load_samples(cfg, "test")


# ---- bad input: each raises DiadError naming the path or value ----

def test_missing_root(tmp_path):
    with pytest.raises(DiadError, match="dataset root '.*nowhere' does not exist; expected an MVTec-AD layout"):
        load_samples(DataConfig(format="mvtec", root=tmp_path / "nowhere"), "train")


def test_unknown_category_lists_available(tmp_path):
    root = _mvtec(tmp_path / "mv")
    with pytest.raises(DiadError, match="'tile'.*available: bottle, screw"):
        load_samples(DataConfig(format="mvtec", root=root, categories=["tile"]), "train")
    with pytest.raises(DiadError, match="'wood'.*available: mono, poly"):
        load_samples(DataConfig(format="elpv", categories=["wood"]), "train")


def test_category_without_training_images(tmp_path):
    root = _mvtec(tmp_path / "mv", cats=("bottle",), n_train=0)
    with pytest.raises(DiadError, match=r"no training images in '.*bottle/train/good'"):
        load_samples(DataConfig(format="mvtec", root=root), "train")


def test_truncated_png(tmp_path):
    path = _png(tmp_path / "t.png", size=(64, 64))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DiadError, match="cannot read image '.*t.png'"):
        AnomalyDataset([Sample(path, None, 0, "c", "good", "test")], 32)[0]
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(DiadError, match="junk.png"):
        AnomalyDataset([Sample(junk, None, 0, "c", "good", "test")], 32)[0]


def test_mask_size_mismatch(tmp_path):
    img, mask = _png(tmp_path / "i.png", size=(32, 32)), _mask(tmp_path / "m.png", size=(16, 16))
    with pytest.raises(DiadError, match=r"mask '.*m.png' is 16x16 but its image '.*i.png' is 32x32"):
        AnomalyDataset([Sample(img, mask, 1, "c", "crack", "test")], 32)[0]


def test_missing_mask_file(tmp_path):
    root = _mvtec(tmp_path / "mv", cats=("bottle",))
    (root / "bottle" / "ground_truth" / "crack" / "000_mask.png").unlink()
    with pytest.raises(DiadError, match="000_mask.png"):
        load_samples(DataConfig(format="mvtec", root=root), "test")


def test_config_validation():
    for bad in (30, 100, 0):
        with pytest.raises(ValidationError, match="image_size"):
            DataConfig(image_size=bad)
    with pytest.raises(ValidationError):
        DataConfig(formt="mvtec")
    with pytest.raises(ValidationError, match="normal_dir"):
        DataConfig(format="folder")
    with pytest.raises(DiadError, match="needs data.root"):
        load_samples(DataConfig(format="mvtec"), "train")
    with pytest.raises(DiadError, match="'val'"):
        load_samples(DataConfig(format="elpv"), "val")
    assert DataConfig().format == "synth" and DataConfig().image_size == 256

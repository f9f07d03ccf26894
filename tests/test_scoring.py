"""diad.scoring: offline backbones, anomaly maps, image scores, checked against known answers."""

import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from diad.errors import DiadError
from diad.scoring import SCORE_RULES, anomaly_maps, gaussian_blur, image_scores, load_backbone
from diad.scoring.backbones import BACKBONES, packaged_lite0_classifier

ESPRESSO, COFFEE_MUG = 967, 504


@pytest.fixture(scope="module")
def lite0():
    return load_backbone()


@pytest.fixture()
def offline_empty(tmp_path, monkeypatch):
    """No weights anywhere: empty $DIAD_WEIGHTS_DIR, HF cache and torch hub cache."""
    for var, sub in [("DIAD_WEIGHTS_DIR", "w"), ("HF_HOME", "hf"), ("HF_HUB_CACHE", "hf/hub"), ("TORCH_HOME", "th")]:
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(tmp_path / sub))
    return tmp_path


def _coffee(size: int) -> torch.Tensor:
    """skimage's coffee cup, (1,3,size,size) in [0,1]."""
    img = Image.fromarray(skimage.data.coffee()).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255


# ---- backbones ------------------------------------------------------------------------------------

def test_packaged_lite0_classifies_coffee_as_espresso():
    model = packaged_lite0_classifier()
    cfg = timm.data.resolve_data_config({}, model=model)
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)  # the TF port's normalisation
    x = timm.data.create_transform(**cfg)(Image.fromarray(skimage.data.coffee()))[None]
    with torch.no_grad():
        probs = model(x).softmax(dim=-1)[0]
    top = probs.topk(5)
    print("coffee top-5:", [(int(i), round(float(p), 4)) for p, i in zip(top.values, top.indices)])
    assert int(top.indices[0]) == ESPRESSO
    assert float(top.values[0]) > 0.5


def test_extractor_matches_the_classifier_intermediates(lite0):
    model = packaged_lite0_classifier()
    x01 = _coffee(128)
    with torch.no_grad():
        ref = model.forward_intermediates((x01 - 0.5) / 0.5, indices=[1, 2, 3], intermediates_only=True)
        got = lite0(x01)
    assert lite0.weights_source == "packaged"
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b)


def test_extractor_is_frozen_and_stays_eval(lite0):
    lite0.train()
    assert not lite0.training and not any(m.training for m in lite0.modules())
    assert not any(p.requires_grad for p in lite0.parameters())


@pytest.mark.parametrize("name,layers,channels", [
    ("efficientnet_lite0", (1, 2, 3), (24, 40, 112)),
    ("efficientnet_lite0", (0, 4), (16, 320)),
    ("resnet18", (2,), (128,)),
    ("resnet18", (0, 1, 2, 3, 4), (64, 64, 128, 256, 512)),
    ("vgg16", (1, 2, 3), (256, 512, 512)),  # timm's VGG has an extra stride-1 level: we pick by stride
])
def test_feature_shapes_follow_the_stride_mapping(name, layers, channels):
    ext = load_backbone(name, weights="random" if name != "efficientnet_lite0" else None, layers=layers)
    feats = ext(torch.rand(2, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(2, c, 64 // 2 ** (i + 1), 64 // 2 ** (i + 1))
                                               for c, i in zip(channels, layers)]
    assert ext.strides == tuple(2 ** (i + 1) for i in layers) and ext.channels == channels


def test_missing_weights_error_names_backbone_and_remedy(offline_empty):
    with pytest.raises(DiadError) as err:
        load_backbone("resnet50")
    msg = str(err.value)
    assert "'resnet50'" in msg and "weights=PATH" in msg and "--backbone-weights" in msg
    assert "resnet50.safetensors" in msg and "DIAD_WEIGHTS_DIR" in msg and "random" in msg


def test_random_weights_are_explicit_recorded_and_seeded(offline_empty):
    a = load_backbone("resnet18", weights="random", layers=(1,))
    b = load_backbone("resnet18", allow_random=True, layers=(1,))  # fallback when nothing is found
    assert a.weights_source == b.weights_source == "random"
    assert a.describe()["backbone_weights"] == "random"
    torch.testing.assert_close(a.net.state_dict()["conv1.weight"], b.net.state_dict()["conv1.weight"])


def test_unknown_backbone_and_bad_layers_are_refused():
    with pytest.raises(DiadError, match="unknown backbone 'resnet9'.*efficientnet_lite0.*resnet50.*vgg19"):
        load_backbone("resnet9")
    for layers in [(), (5,), (1, 1), (-1,)]:
        with pytest.raises(DiadError, match="layers"):
            load_backbone("resnet18", weights="random", layers=layers)
    assert len(BACKBONES) == 12


@pytest.fixture()
def resnet18_file(tmp_path):
    """A full timm resnet18 state dict with weights no default init would produce."""
    torch.manual_seed(123)
    sd = {k: (torch.randn_like(v) if v.is_floating_point() else v)
          for k, v in timm.create_model("resnet18", pretrained=False).state_dict().items()}
    return sd


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_explicit_weights_file_round_trip(tmp_path, resnet18_file, fmt):
    path = tmp_path / f"r18.{fmt}"
    torch.save(resnet18_file, path) if fmt == "pth" else save_file(resnet18_file, str(path))
    ext = load_backbone("resnet18", weights=path, layers=(1, 2))
    assert ext.weights_source == str(path.resolve())
    torch.testing.assert_close(ext.net.state_dict()["layer2.0.conv1.weight"], resnet18_file["layer2.0.conv1.weight"])


def test_weights_map_by_position_when_names_differ(tmp_path, resnet18_file):
    renamed = {f"backbone.{i}": v for i, v in enumerate(resnet18_file.values())}
    torch.save(renamed, tmp_path / "renamed.pt")
    ext = load_backbone("resnet18", weights=tmp_path / "renamed.pt")
    torch.testing.assert_close(ext.net.state_dict()["layer3.1.bn2.running_var"],
                               resnet18_file["layer3.1.bn2.running_var"])
    bad = dict(renamed, **{"backbone.0": torch.zeros(1, 2, 3)})
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(DiadError, match=r"bad\.pt.*tensor 0.*\(1, 2, 3\)"):
        load_backbone("resnet18", weights=tmp_path / "bad.pt")
    with pytest.raises(DiadError, match="does not exist"):
        load_backbone("resnet18", weights=tmp_path / "nope.pt")


def test_weights_dir_is_searched(offline_empty, resnet18_file):
    path = offline_empty / "w" / "resnet18.safetensors"
    save_file(resnet18_file, str(path))
    ext = load_backbone("resnet18")
    assert ext.weights_source == str(path)
    torch.testing.assert_close(ext.net.state_dict()["conv1.weight"], resnet18_file["conv1.weight"])


# ---- anomaly maps ---------------------------------------------------------------------------------

def test_identical_images_give_a_zero_map(lite0):
    x = torch.cat([_coffee(96), torch.rand(1, 3, 96, 96)])
    maps = anomaly_maps(lite0, x, x.clone())
    assert maps.shape == (2, 96, 96) and maps.dtype == torch.float32
    assert float(maps.abs().max()) < 1e-5


def test_local_perturbation_peaks_where_it_is(lite0):
    x = _coffee(128)
    recon = x.clone()
    gen = torch.Generator().manual_seed(0)
    recon[:, :, 80:100, 20:40] = torch.rand(1, 3, 20, 20, generator=gen)  # a noise patch
    maps = anomaly_maps(lite0, x, recon)[0]
    row, col = divmod(int(maps.argmax()), maps.shape[1])
    assert 80 - 8 <= row < 100 + 8 and 20 - 8 <= col < 40 + 8, (row, col)
    inside, outside = maps[80:100, 20:40].mean(), maps[:, 64:].mean()
    assert inside > 5 * outside


def test_anomaly_maps_refuse_mismatched_shapes(lite0):
    with pytest.raises(DiadError, match="one shape"):
        anomaly_maps(lite0, torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 32))


# Tolerance: float32 torch vs float64 scipy, maps of order 1 -> absolute 1e-5 everywhere (borders included).
@pytest.mark.parametrize("shape,sigma", [((40, 52), 4.0), ((33, 30), 1.5), ((9, 12), 4.0)])
def test_gaussian_blur_matches_scipy_reflect(shape, sigma):
    rng = np.random.default_rng(0)
    maps = rng.random((2, *shape))
    ref = np.stack([scipy.ndimage.gaussian_filter(m, sigma=sigma, mode="reflect") for m in maps])
    got = gaussian_blur(torch.from_numpy(maps).float(), sigma).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_gaussian_blur_sigma_zero_is_identity():
    maps = torch.rand(1, 8, 8)
    assert torch.equal(gaussian_blur(maps, 0.0), maps)


# ---- image scores ---------------------------------------------------------------------------------

def test_max_and_topk_mean_known_answers():
    maps = torch.zeros(2, 4, 4)
    maps[0, 1, 2] = 5.0
    maps[1] = torch.arange(16, dtype=torch.float32).view(4, 4)  # top 4: 15, 14, 13, 12
    assert image_scores(maps, "max").tolist() == [5.0, 15.0]
    assert image_scores(maps, "topk_mean", k=4).tolist() == [1.25, 13.5]
    assert image_scores(maps, "topk_mean", k=0.25).tolist() == [1.25, 13.5]  # 25 % of 16 px = 4 px
    assert image_scores(maps, "topk_mean", k=0.01).tolist() == [5.0, 15.0]  # ceil -> at least 1 px
    for k in [0, 0.0, 1.5, 17, True, "3"]:
        with pytest.raises(DiadError, match="topk_mean k="):
            image_scores(maps, "topk_mean", k=k)


def test_authors_pool_equals_one_57px_box_filter():
    # Eight stride-1 8x8 average pools = one valid 57x57 filter whose 1-D profile is box(8)/8 convolved
    # with itself eight times; compare with that reference built in numpy.
    box = np.ones(8) / 8
    prof = box
    for _ in range(7):
        prof = np.convolve(prof, box)
    assert prof.size == 57
    kernel = np.outer(prof, prof)
    maps = np.zeros((2, 64, 70))
    maps[0, 10:30, 40:50] = 1.0
    maps[1] = np.random.default_rng(1).random((64, 70))
    ref = [max((m[i:i + 57, j:j + 57] * kernel).sum() for i in range(8) for j in range(14)) for m in maps]
    got = image_scores(torch.from_numpy(maps), "authors_pool")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5)
    assert image_scores(torch.full((1, 57, 57), 0.3), "authors_pool").item() == pytest.approx(0.3)


def test_score_rule_errors():
    assert SCORE_RULES == ("authors_pool", "max", "topk_mean")
    with pytest.raises(DiadError, match="unknown score rule 'mean'"):
        image_scores(torch.zeros(1, 64, 64), "mean")
    with pytest.raises(DiadError, match="at least 57x57"):
        image_scores(torch.zeros(1, 56, 64), "authors_pool")
    with pytest.raises(DiadError, match=r"\(N,H,W\)"):
        image_scores(torch.zeros(64, 64), "max")


def test_timm_checkpoint_in_local_hf_cache_is_used(offline_empty, resnet18_file):
    # The layout huggingface_hub writes: models--<org>--<name>/refs/main + snapshots/<rev>/<file>.
    repo = offline_empty / "hf" / "hub" / "models--timm--resnet18.a1_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    save_file(resnet18_file, str(snap / "model.safetensors"))
    ext = load_backbone("resnet18", layers=(1,))
    assert ext.weights_source == str(snap / "model.safetensors")
    torch.testing.assert_close(ext.net.state_dict()["conv1.weight"], resnet18_file["conv1.weight"])

"""diad.diagnostics: the SG influence is exactly zero through closed zero-convs and positive once one opens."""

from __future__ import annotations

import math

import pytest
import torch

from diad.config import ReconConfig
from diad.diagnostics import diagnose, hint_sensitivity, recon_errors, sg_influence
from diad.schema import COLUMN_KINDS, DIAGNOSTICS
from diad.train.batches import DecodedSplit
from test_models import SG_VARIANTS, images, one_thread, open_zero_convs, tiny  # noqa: F401 (fixture)


RECON = ReconConfig(forward_steps=50, ddim_steps=2, seed=0)


def split_of(x01: torch.Tensor, labels: list[int], masks: torch.Tensor | None = None) -> DecodedSplit:
    u8 = (x01 * 255).round().to(torch.uint8)
    m = masks if masks is not None else torch.zeros(len(x01), *x01.shape[2:], dtype=torch.uint8)
    n = len(labels)
    return DecodedSplit(u8, m, labels, ["c"] * n, [f"c/good/{i}.png" for i in range(n)], masks is not None)


def test_every_diagnostic_is_a_float_result_column():
    assert all(COLUMN_KINDS[d] == "float" for d in DIAGNOSTICS)


@pytest.mark.parametrize("variant", SG_VARIANTS)
def test_sg_influence_is_zero_at_init_and_positive_after_opening_a_zero_conv(variant):
    model = tiny(variant).eval()
    x = images(2)
    assert sg_influence(model, x, 600, seed=0)[0] == 0.0  # every injected output passes a zero-conv
    assert hint_sensitivity(model, x, RECON) == 0.0
    open_zero_convs(model)
    assert sg_influence(model, x, 600, seed=0)[0] > 1e-4
    assert hint_sensitivity(model, x, RECON) > 0.0


@pytest.mark.parametrize("variant", ["ldm", "ddpm"])
def test_models_without_sg_report_zero_influence_and_zero_hint_sensitivity(variant):
    model = tiny(variant).eval()
    x = images(3)
    out = diagnose(model, split_of(x, [0, 1, 0]), (x * 255).round().to(torch.uint8), RECON, n_images=3)
    assert tuple(out) == DIAGNOSTICS
    assert all(out[f"diag_sg_influence_t{t}"] == 0.0 for t in (999, 600, 300))
    assert out["diag_hint_sensitivity"] == 0.0
    assert math.isnan(out["diag_recon_l1_defect"])  # no masks
    assert out["diag_recon_l1_normal"] == 0.0  # the "reconstructions" were the images themselves
    assert math.isnan(out["diag_ae_floor_l1"]) == (variant == "ddpm")  # no autoencoder in pixel space


def test_reconstruction_errors_on_normal_and_defect_pixels():
    x = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    r = x.clone()
    r[1, :, 0, 0] = 255  # one wrong pixel, inside the defect mask of image 1
    r[0, :, 3, 3] = 51  # 0.2 off on one normal pixel of image 0
    masks = torch.zeros(2, 4, 4, dtype=torch.uint8)
    masks[1, 0, :2] = 1
    out = recon_errors(x, r, [0, 1], masks)
    assert out["diag_recon_l1_defect"] == pytest.approx(0.5)  # 1.0 on one of two defect pixels
    assert out["diag_recon_l1_normal"] == pytest.approx(0.2 / 30)  # 30 normal pixels
    assert out["diag_recon_l1_anomalous"] == pytest.approx(1 / 16)
    no_masks = recon_errors(x, r, [0, 1], None)
    assert no_masks["diag_recon_l1_normal"] == pytest.approx(0.2 / 16) and math.isnan(no_masks["diag_recon_l1_defect"])

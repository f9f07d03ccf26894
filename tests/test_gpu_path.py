"""The GPU code path at the sweep level, tested without a GPU: fractional GPUs per trial, fidelity columns."""

from __future__ import annotations

import textwrap

import pyarrow as pa

from diad.config import RunConfig
from diad.sweep import results
from diad.sweep.spec import load_spec

SPEC = """\
name: frac
base:
  train: {steps: 2}
resources: {cpu: 1, gpu: 0.5}
presets:
  gpu:
    resources.gpu: 1
"""


def _spec(tmp_path, overrides=()):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(SPEC))
    return load_spec(path, list(overrides))[0]


def test_fractional_gpu_reaches_rays_per_trial_resources(tmp_path):
    from diad.sweep.runner import _trainable
    from diad.sweep.trainable import SweepContext

    for overrides, want in [((), 0.5), (("resources.gpu=0.25",), 0.25), (("preset=gpu", "resources.gpu=0.25"), 0.25)]:
        spec = _spec(tmp_path, overrides)
        ctx = SweepContext(sweep_id=spec.name, storage=str(tmp_path), cache_dir=str(tmp_path / "c"), base=spec.base)
        request = _trainable(ctx, spec).default_resource_request({})  # what Tune asks the scheduler for, per trial
        assert request.bundles == [{"CPU": 1.0, "GPU": want}]


def test_fidelity_switches_are_typed_result_columns():
    cols = results.config_columns(RunConfig)
    for name in ("train.grad_accum", "train.precision", "eval.ddim_grid", "eval.precision", "model.vae_posterior"):
        assert name in cols
    assert cols["train.grad_accum"] == pa.int64() and cols["eval.ddim_grid"] == pa.string()
    schema = results.schema_for(RunConfig)
    assert "image_auroc_flipped_legacy" in schema.names and "pixel_pro_legacy" in schema.names


def test_flipped_auroc_legacy_column_flips_only_below_one_half():
    import numpy as np

    from diad.metrics.image import image_metrics

    worse = image_metrics([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.3])  # perfectly inverted scores
    assert worse["image_auroc"] == 0.0 and worse["image_auroc_flipped_legacy"] == 1.0
    good = image_metrics([0, 1, 0, 1], [0.1, 0.7, 0.8, 0.9])
    assert good["image_auroc"] == good["image_auroc_flipped_legacy"] == 0.75
    assert np.isnan(image_metrics([0, 0], [0.1, 0.2])["image_auroc_flipped_legacy"])

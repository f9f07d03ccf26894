"""One run = one YAML: sections `data`, `model`, `train`, `eval`; profile defaults; what each cache key covers.

Torch-free: loading and validating a config never imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from diad.data.config import DataConfig
from diad.errors import DiadError, validation_error
from diad.hashing import json_hash
from diad.models.config import ModelConfig
from diad.overrides import apply_overrides, deep_merge, parse_overrides
from diad.profiles import PROFILES
from diad.yaml_io import load_yaml_file

SECTIONS = ("data", "model", "train", "eval")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AutoencoderTrainConfig(_Strict):
    """The autoencoder stage: L1 + perceptual + KL, trained (cpu) or fine-tuned (paper) before the denoiser."""

    steps: int = Field(2000, ge=0)  # 0 = use the autoencoder as built (pretrained or random)
    lr: float = Field(1e-5, gt=0)
    batch_size: int = Field(8, ge=1)
    kl_weight: float = Field(1e-6, ge=0)
    perceptual_weight: float = Field(1.0, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    # None = train.seed. The cpu profile fixes it (0): a sweep's seeds then vary the denoiser only and share
    # one cached autoencoder (one autoencoder stage per sweep instead of one per seed).
    seed: int | None = None

    def seed_for(self, train_seed: int) -> int:
        """The seed this stage uses."""
        return train_seed if self.seed is None else self.seed


class TrainConfig(_Strict):
    """Autoencoder stage + denoiser training. Set `steps` or `epochs` (optimizer steps win when both)."""

    steps: int | None = Field(None, ge=1)  # optimizer steps
    epochs: int | None = Field(None, ge=1)  # passes over the training images (paper: 1000)
    batch_size: int = Field(12, ge=1)
    grad_accum: int = Field(1, ge=1)  # micro-batches per optimizer step
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    # Training timesteps t ~ U{0..t_max-1}. 1000 = the paper (every step). The cpu profile trains only the steps
    # its evaluation T visits, so its little capacity learns where reconstruction starts
    # (docs/cpu-profile-design.md); keep t_max >= eval.forward_steps.
    t_max: int = Field(1000, ge=1, le=1000)
    seed: int = 0  # the denoiser's (and the autoencoder stage's unless train.autoencoder.seed is set)
    autoencoder: AutoencoderTrainConfig = Field(default_factory=AutoencoderTrainConfig)
    # runtime only (RUNTIME_FIELDS: they change neither the weights nor the metrics)
    checkpoint_every: int = Field(1000, ge=1)
    keep_last: int | None = Field(2, ge=1)  # older checkpoints are deleted; None keeps all
    val_batches: int = Field(4, ge=1)  # validation loss (at each checkpoint) over at most this many batches
    num_threads: int | None = Field(None, ge=1)  # torch.set_num_threads; None = torch default
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # not runtime-only: bf16 changes the trained weights. bf16 autocasts the forward passes (GPU speed);
    # loss and optimizer stay fp32
    precision: Literal["fp32", "bf16"] = "fp32"

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> "TrainConfig":
        if self.steps is None and self.epochs is None:
            raise ValueError("set steps or epochs")
        return self


class ReconConfig(_Strict):
    """How test images are reconstructed. Every field here (and only these) shapes the reconstruction
    cache entry, so an eval option that changes reconstructions is added here and nowhere else."""

    forward_steps: int = Field(1000, ge=1, le=1000)  # T: noise the latent to step T (t = T-1)
    ddim_steps: int = Field(10, ge=1)
    # authors: steps at 901, 801, ..., 1, the last to alpha_bar_0 = 0.99915 (their ddim.py); diffusers:
    # 999, 899, ..., 99, the last to alpha_bar = 1. Both noise the latent to t = T-1 (diad.models.ddim).
    ddim_grid: Literal["authors", "diffusers"] = "diffusers"
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast the reconstruction networks; DDIM update fp32
    seed: int = 0  # the forward-noise seed (one generator per image)


class EvalConfig(ReconConfig):
    """Reconstruction (the ReconConfig fields, flat: eval.forward_steps, ...) and anomaly scoring."""

    backbone: str = "efficientnet_lite0"
    backbone_weights: Path | None = None  # local weights file; None = packaged/cached default
    allow_random_backbone: bool = False  # random weights only when asked for (recorded in results)
    layers: list[int] = Field(default_factory=lambda: [1, 2, 3])
    sigma: float = Field(4.0, ge=0)
    score_rule: Literal["authors_pool", "max", "topk_mean"] = "authors_pool"
    topk: float | int = Field(0.01, gt=0)  # topk_mean: a fraction of the pixels (float) or a count (int)
    # test images in the diagnostics' subset (diad.diagnostics: SG influence, hint sensitivity); 0 = no diagnostics
    diag_images: int = Field(8, ge=0)
    # runtime only
    batch_size: int = Field(8, ge=1)
    num_threads: int | None = Field(None, ge=1)  # torch.set_num_threads; None = torch default
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @property
    def recon(self) -> ReconConfig:
        """The reconstruction settings alone (the reconstruction cache key covers exactly these)."""
        return ReconConfig(**{name: getattr(self, name) for name in ReconConfig.model_fields})


class RunConfig(_Strict):
    """Everything one training + evaluation run needs."""

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig = Field(default_factory=EvalConfig)


# Fields that change neither the trained weights nor the metrics: left out of every content hash.
RUNTIME_FIELDS = {"train": {"checkpoint_every", "keep_last", "num_threads", "device", "val_batches"},
                  "eval": {"batch_size", "num_threads", "device"}}


def _one_image_size(model_raw: dict, data_raw: dict, source: str) -> None:
    """data.image_size and model.image_size are one value: either may be given; both must then agree."""
    d, m = data_raw.get("image_size"), model_raw.get("image_size")
    if d is not None and m is not None and d != m:
        raise DiadError(f"{source}: data.image_size={d} but model.image_size={m}; give one of them",
                        key="data.image_size")
    if d is not None:
        model_raw["image_size"] = d


def build_run_config(raw: dict, source: str = "<config>") -> RunConfig:
    """Raw nested dict -> RunConfig: profile defaults under the user's values, variant switches via ModelConfig."""
    if not isinstance(raw, dict):
        raise DiadError(f"{source}: expected a mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise DiadError(f"{source}: unknown section {unknown[0]!r} (allowed: {', '.join(SECTIONS)})", key=unknown[0])
    for section in SECTIONS:
        if raw.get(section) is not None and not isinstance(raw[section], dict):
            raise DiadError(f"{source}: section {section!r} must be a mapping, got {raw[section]!r}", key=section)
    raw = {k: (v or {}) for k, v in raw.items()}
    model_raw = dict(raw.get("model", {}))
    profile = model_raw.get("profile", ModelConfig.model_fields["profile"].default)
    if profile not in PROFILES:
        raise DiadError(f"{source}: model.profile: {profile!r} is not one of {', '.join(PROFILES)}",
                        key="model.profile")
    defaults = {k: v for k, v in PROFILES[profile].items() if k != "model"}  # ModelConfig fills its own
    if {"steps", "epochs"} & set(raw.get("train", {})):
        # the user chose how long to train: the profile's length (steps or epochs) must not override it
        defaults["train"] = {k: v for k, v in defaults["train"].items() if k not in ("steps", "epochs")}
    merged = deep_merge(defaults, {k: v for k, v in raw.items() if k != "model"})
    _one_image_size(model_raw, raw.get("data", {}), source)
    try:
        model = ModelConfig.model_validate(model_raw)
    except ValidationError as e:
        raise validation_error(e, ModelConfig, source, prefix=("model",)) from None
    data = {**merged.get("data", {}), "image_size": model.image_size}
    try:
        return RunConfig(model=model, data=data, **{k: merged.get(k, {}) for k in ("train", "eval")})
    except ValidationError as e:
        raise validation_error(e, RunConfig, source) from None


def load_run_config(yaml_path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """Read a run YAML, apply `section.key=value` overrides, validate. Errors are one-line DiadErrors."""
    path = Path(yaml_path)
    raw = load_yaml_file(path, "config file")  # refuses empty and binary files and duplicate keys
    if not raw:
        raise DiadError(f"{path}: empty config (no sections); expected {', '.join(SECTIONS)} (see configs/cpu.yaml)")
    if isinstance(raw, dict):
        raw = apply_overrides(raw, parse_overrides(overrides))
    return build_run_config(raw, str(path))


def with_overrides(cfg: RunConfig, overrides: Iterable[str], source: str = "override") -> RunConfig:
    """A copy of `cfg` with `section.key=value` overrides applied and validated."""
    return build_run_config(apply_overrides(cfg.model_dump(mode="json"), parse_overrides(overrides)), source)


# ---- what each artifact depends on (its cache key covers exactly this) ---------------------------------

def _without_runtime(section: str, dump: dict) -> dict:
    return {k: v for k, v in dump.items() if k not in RUNTIME_FIELDS.get(section, set())}


def training_part(cfg: RunConfig) -> dict:
    """What the trained denoiser checkpoint depends on: data + model + train (runtime fields left out)."""
    return {name: _without_runtime(name, getattr(cfg, name).model_dump(mode="json"))
            for name in ("data", "model", "train")}


def evaluation_part(cfg: RunConfig) -> dict:
    """What the metrics of a given checkpoint depend on besides the checkpoint: eval (runtime left out)."""
    return {"eval": _without_runtime("eval", cfg.eval.model_dump(mode="json"))}


def autoencoder_part(cfg: RunConfig) -> dict:
    """What the trained autoencoder depends on: the training data, model.autoencoder (+ image size and
    pretrained weights it starts from) and the autoencoder stage's training settings."""
    m = cfg.model
    return {"data": cfg.data.model_dump(mode="json"),
            "model": {"image_size": m.image_size, "pretrained_dir": str(m.pretrained_dir) if m.pretrained_dir else None,
                      "autoencoder": m.autoencoder.model_dump(mode="json")},
            "train": {"seed": cfg.train.autoencoder.seed_for(cfg.train.seed),
                      "autoencoder": cfg.train.autoencoder.model_dump(mode="json", exclude={"seed"})}}


def eval_data_part(data_cfg: DataConfig) -> dict:
    """The data fields that decide which test images are reconstructed, and how they look."""
    return {k: v for k, v in data_cfg.model_dump(mode="json").items() if k != "val_fraction"}


def train_hash(cfg: RunConfig) -> str:
    return json_hash(training_part(cfg))


def eval_hash(cfg: RunConfig) -> str:
    return json_hash(evaluation_part(cfg))

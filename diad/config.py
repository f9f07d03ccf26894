"""One run = one YAML: sections `data`, `model`, `train`, `eval`; profile defaults; content hashes."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from diad.data import DataConfig
from diad.errors import DiadError
from diad.models.config import ModelConfig, model_config


class TrainConfig(BaseModel):
    """Autoencoder stage + denoiser training. Set `steps` or `epochs` (optimizer steps win when both)."""

    model_config = ConfigDict(extra="forbid")

    steps: int | None = Field(None, ge=1)  # optimizer steps
    epochs: int | None = Field(None, ge=1)  # passes over the training images (paper: 1000)
    batch_size: int = Field(12, ge=1)
    grad_accum: int = Field(1, ge=1)  # micro-batches per optimizer step
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    seed: int = 0
    ae_steps: int = Field(2000, ge=0)  # 0 = use the autoencoder as built (pretrained or random)
    ae_lr: float = Field(1e-5, gt=0)
    ae_batch_size: int = Field(8, ge=1)
    ae_kl_weight: float = Field(1e-6, ge=0)
    ae_perceptual_weight: float = Field(1.0, ge=0)
    checkpoint_every: int = Field(1000, ge=1)
    keep_last: int | None = Field(2, ge=1)  # older checkpoints are deleted; None keeps all
    val_batches: int = Field(4, ge=1)  # validation loss (at each checkpoint) over at most this many batches
    num_threads: int | None = Field(None, ge=1)  # torch.set_num_threads; None = torch default
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> "TrainConfig":
        if self.steps is None and self.epochs is None:
            raise ValueError("train: set steps or epochs")
        return self


class EvalConfig(BaseModel):
    """Reconstruction (T, DDIM steps) and anomaly scoring (backbone, layers, smoothing, score rule)."""

    model_config = ConfigDict(extra="forbid")

    backbone: str = "efficientnet_lite0"
    backbone_weights: Path | None = None  # local weights file; None = packaged/cached default
    allow_random_backbone: bool = False  # random weights only when asked for (recorded in results)
    layers: list[int] = Field(default_factory=lambda: [1, 2, 3])
    forward_steps: int = Field(1000, ge=1, le=1000)  # T: noise the latent to step T (t = T-1)
    ddim_steps: int = Field(10, ge=1)
    sigma: float = Field(4.0, ge=0)
    score_rule: Literal["authors_pool", "max", "topk_mean"] = "authors_pool"
    topk: float | int = Field(0.01, gt=0)  # topk_mean: a fraction of the pixels (float) or a count (int)
    batch_size: int = Field(8, ge=1)
    seed: int = 0
    num_threads: int | None = Field(None, ge=1)  # torch.set_num_threads; None = torch default
    device: Literal["auto", "cpu", "cuda"] = "auto"


class RunConfig(BaseModel):
    """Everything one training + evaluation run needs."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig = Field(default_factory=EvalConfig)


# Defaults per profile: applied under the user's values, so an explicit value always wins.
PROFILE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "cpu": {
        "data": {},
        "train": {"steps": 600, "batch_size": 8, "lr": 2e-3, "weight_decay": 0.0,
                  "ae_steps": 200, "ae_lr": 2e-3, "ae_batch_size": 8, "ae_kl_weight": 1e-6,
                  "ae_perceptual_weight": 0.1, "checkpoint_every": 200, "val_batches": 2},
        "eval": {"batch_size": 16},
    },
    "paper": {
        "data": {},
        "train": {"epochs": 1000, "batch_size": 12, "lr": 1e-5, "ae_steps": 2000, "ae_lr": 1e-5,
                  "checkpoint_every": 1000},
        "eval": {"batch_size": 8, "sigma": 5.0},  # the paper's (and the authors' test.py) smoothing at 256 px
    },
}
SECTIONS = ("data", "model", "train", "eval")
# Fields that change neither the trained weights nor the metrics (left out of the content hashes).
_NOT_HASHED = {"train": {"checkpoint_every", "keep_last", "num_threads", "device", "val_batches"},
               "eval": {"batch_size", "num_threads", "device"}}


def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _allowed_fields(loc: tuple) -> list[str]:
    """Field names allowed at the parent of `loc` (for 'did you mean' style messages)."""
    cls: Any = RunConfig
    for part in loc[:-1]:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = field.annotation
    return sorted(getattr(cls, "model_fields", {}))


def _one_line(err: ValidationError, source: str, prefix: tuple = ()) -> DiadError:
    """The first pydantic error as one line naming the key, the file and what is allowed."""
    first = err.errors()[0]
    loc = prefix + tuple(str(p) for p in first["loc"])
    key = ".".join(loc) or "<root>"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = f"unknown key (allowed: {', '.join(_allowed_fields(loc))})"
    elif "input" in first and not isinstance(first["input"], dict):
        msg = f"{msg} (got {first['input']!r})"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return DiadError(f"{source}: {key}: {msg}{more}")


def _one_image_size(merged: dict, model_raw: dict, data_raw: dict, source: str) -> None:
    """data.image_size and model.image_size are one value: either may be given; both must then agree."""
    d, m = data_raw.get("image_size"), model_raw.get("image_size")
    if d is not None and m is not None and d != m:
        raise DiadError(f"{source}: data.image_size={d} but model.image_size={m}; give one of them")
    if d is not None:
        model_raw["image_size"] = d
    merged.setdefault("data", {})


def build_run_config(raw: dict, source: str = "<config>") -> RunConfig:
    """Raw nested dict -> RunConfig: profile defaults under the user's values, variant presets via model_config."""
    if not isinstance(raw, dict):
        raise DiadError(f"{source}: expected a mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise DiadError(f"{source}: unknown section {unknown[0]!r} (allowed: {', '.join(SECTIONS)})")
    for section in SECTIONS:
        if raw.get(section) is not None and not isinstance(raw[section], dict):
            raise DiadError(f"{source}: section {section!r} must be a mapping, got {raw[section]!r}")
    raw = {k: (v or {}) for k, v in raw.items()}
    model_raw = dict(raw.get("model", {}))
    profile = model_raw.pop("profile", ModelConfig.model_fields["profile"].default)
    if profile not in PROFILE_DEFAULTS:
        raise DiadError(f"{source}: model.profile: {profile!r} is not one of {', '.join(PROFILE_DEFAULTS)}")
    defaults = copy.deepcopy(PROFILE_DEFAULTS[profile])
    if {"steps", "epochs"} & set(raw.get("train", {})):
        # the user chose how long to train: the profile's length (steps or epochs) must not override it
        defaults["train"].pop("steps", None), defaults["train"].pop("epochs", None)
    merged = _deep_merge(defaults, {k: v for k, v in raw.items() if k != "model"})
    _one_image_size(merged, model_raw, raw.get("data", {}), source)
    try:
        model = model_config(profile, model_raw.pop("variant", "diad"), **model_raw)
    except ValidationError as e:
        raise _one_line(e, source, ("model",)) from None
    except DiadError as e:
        msg = str(e).replace("model.model: ", "model: ").replace("Value error, ", "")
        raise DiadError(f"{source}: {msg}") from None
    merged["data"]["image_size"] = model.image_size
    try:
        return RunConfig(model=model, **{k: merged.get(k, {}) for k in ("data", "train", "eval")})
    except ValidationError as e:
        raise _one_line(e, source) from None


def parse_overrides(overrides: Iterable[str]) -> dict:
    """["train.steps=10", "eval.layers=[1,2]"] -> nested dict (values parsed as YAML scalars/lists)."""
    out: dict = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise DiadError(f"override {item!r}: expected section.key=value, e.g. train.steps=100")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    return out


def load_run_config(yaml_path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """Read a run YAML, apply `section.key=value` overrides, validate. Errors are one-line DiadErrors."""
    path = Path(yaml_path)
    if not path.is_file():
        raise DiadError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise DiadError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return build_run_config(_deep_merge(raw, parse_overrides(overrides)) if isinstance(raw, dict) else raw,
                            str(path))


def with_overrides(cfg: RunConfig, overrides: Iterable[str], source: str = "override") -> RunConfig:
    """A copy of `cfg` with `section.key=value` overrides applied and validated."""
    raw = _deep_merge(cfg.model_dump(mode="json"), parse_overrides(overrides))
    return build_run_config(raw, source)


def canonical_json(obj: Any) -> str:
    """Sorted-key compact JSON: the same config always gives the same bytes."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(obj: Any, length: int = 16) -> str:
    """Stable content hash (sha256 prefix) of a pydantic model or JSON-able value."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def _section(cfg: RunConfig, name: str) -> dict:
    dump = getattr(cfg, name).model_dump(mode="json")
    return {k: v for k, v in dump.items() if k not in _NOT_HASHED.get(name, set())}


def training_part(cfg: RunConfig) -> dict:
    """The config values that determine the trained weights (data + model + train)."""
    return {name: _section(cfg, name) for name in ("data", "model", "train")}


def evaluation_part(cfg: RunConfig) -> dict:
    """The config values that determine the metrics of a given checkpoint (eval)."""
    return {"eval": _section(cfg, "eval")}


def train_hash(cfg: RunConfig) -> str:
    return config_hash(training_part(cfg))


def eval_hash(cfg: RunConfig) -> str:
    return config_hash(evaluation_part(cfg))

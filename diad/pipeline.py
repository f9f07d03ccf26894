"""Train and evaluate: the functions the CLI and the sweep layer call (no Ray, no pandas here)."""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from diad import checkpoint as ckpt
from diad.config import RunConfig, config_hash
from diad.data import MASK_RULE, DataConfig, load_samples, split_train_val
from diad.errors import DiadError
from diad.io import atomic_dir, cache_root
from diad.metrics import PRO_DEFINITION, evaluate_by_category
from diad.models import build_model
from diad.models.reconstruct import reconstruct
from diad.scoring import anomaly_maps, image_scores, load_backbone
from diad.train import OnCheckpoint, ensure_autoencoder, load_images_uint8, load_split, train_denoiser
from diad.train.batches import generator, to_float


@dataclass(frozen=True)
class TrainResult:
    checkpoint_dir: Path
    steps: int
    wall_s: float
    images_per_s: float
    peak_mem_mb: float
    final_loss: float
    val_loss: float
    ae_cached: bool


@dataclass(frozen=True)
class EvalResult:
    per_category: dict[str, dict[str, float]]  # metric name -> value, per category and "mean"
    n_images: dict[str, int]  # test images per category (and "mean": all of them)
    wall_s: float
    images_per_s: float
    recon_cached: bool
    protocol: dict


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; an explicit cuda without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DiadError("device 'cuda' was asked for but torch sees no GPU; use device=cpu or auto")
    return torch.device(name)


def peak_mem_mb(device: torch.device) -> float:
    """GPU peak allocation on cuda, else the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _setup(threads: int | None, seed: int) -> None:
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)


def _initial_model(run_cfg: RunConfig, train_x: torch.Tensor, out_dir: Path, cache_dir: Path,
                   device: torch.device, progress: bool) -> tuple[torch.nn.Module, bool, dict]:
    """The model to start from: with the (cached) trained autoencoder, or bare when a checkpoint will be resumed."""
    cfg = run_cfg.model
    if ckpt.latest_checkpoint(out_dir / "checkpoints") is not None:
        return build_model(cfg, load_pretrained=False), False, {}  # every weight comes from the checkpoint
    if cfg.pixel_space or run_cfg.train.ae_steps == 0:
        return build_model(cfg), False, {}
    vae, cached, metrics = ensure_autoencoder(run_cfg, train_x, cache_dir, device, progress)
    torch.manual_seed(run_cfg.train.seed)  # the denoiser's init must not depend on whether the AE was cached
    model = build_model(cfg, vae=vae)
    model.latent_scale.fill_(metrics["ae_latent_scale"])  # a buffer: saved with the checkpoint
    return model, cached, metrics


def train(run_cfg: RunConfig, out_dir: str | Path, cache_dir: str | Path | None = None,
          on_checkpoint: OnCheckpoint | None = None, progress: bool = True) -> TrainResult:
    """Autoencoder stage (cached) then denoiser training into out_dir/checkpoints; resumes when possible."""
    out_dir, t0 = Path(out_dir), time.perf_counter()
    cache_dir = Path(cache_dir) if cache_dir is not None else cache_root()
    _setup(run_cfg.train.num_threads, run_cfg.train.seed)
    device = resolve_device(run_cfg.train.device)
    train_samples, val_samples = split_train_val(load_samples(run_cfg.data, "train"), run_cfg.data.val_fraction,
                                                 run_cfg.data.split_seed)
    if not train_samples:
        raise DiadError(f"data: no training images found for {run_cfg.data.format} at {run_cfg.data.root}")
    size = run_cfg.data.image_size
    train_x, val_x = load_images_uint8(train_samples, size), load_images_uint8(val_samples, size)
    model, ae_cached, ae_metrics = _initial_model(run_cfg, train_x, out_dir, cache_dir, device, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt.write_json(out_dir / "run_config.json", run_cfg.model_dump(mode="json"))
    res = train_denoiser(run_cfg, model, train_x, val_x, out_dir, device, progress, on_checkpoint,
                         extra_metrics={f"{k}": v for k, v in ae_metrics.items() if k.startswith("ae_")})
    result = TrainResult(res.checkpoint_dir, res.steps, time.perf_counter() - t0, res.images_per_s,
                         peak_mem_mb(device), res.final_loss, res.val_loss, ae_cached)
    ckpt.write_json(out_dir / "train_result.json", asdict(result))
    return result


def load_trained(checkpoint_dir: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, RunConfig]:
    """(model in eval mode on `device`, its RunConfig) from a checkpoint directory (safetensors only)."""
    path = Path(checkpoint_dir)
    if not path.is_dir():
        raise DiadError(f"checkpoint directory {path} does not exist")
    run_cfg = RunConfig.model_validate(ckpt.read_config(path))
    model = build_model(run_cfg.model, load_pretrained=False)
    ckpt.load_weights(path, model)
    return model.to(device).eval(), run_cfg


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir, or a training out dir (then its latest checkpoint)."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    latest = ckpt.latest_checkpoint(path / "checkpoints")
    if latest is None:
        raise DiadError(f"{path}: neither a checkpoint (state.json) nor a training dir with checkpoints/")
    return latest


# ---- reconstruction (cached) ------------------------------------------------------------------------

def _test_data_key(data_cfg: DataConfig) -> dict:
    """The data fields that decide which test images are reconstructed, and how they look."""
    dump = data_cfg.model_dump(mode="json")
    return {k: v for k, v in dump.items() if k != "val_fraction"}


@torch.no_grad()
def _reconstruct_all(model, images: torch.Tensor, keys: list[str], forward_steps: int, ddim_steps: int, seed: int,
                     batch_size: int, device: torch.device, progress: bool) -> torch.Tensor:
    """uint8 (N,3,H,W) -> reconstructions as uint8 (quantised like the inputs, so cached == fresh)."""
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="reconstruct", file=sys.stderr,
                      disable=not progress, leave=False):
        x = to_float(images[start:start + batch_size], device)
        # one CPU generator per image (diffusers' randn_tensor takes a list): the result does not depend
        # on the batch size or the device, and a subset reconstructs exactly as in the full split
        gens = [generator(seed, "recon", key) for key in keys[start:start + batch_size]]
        rec = reconstruct(model, x, forward_steps=forward_steps, ddim_steps=ddim_steps, generator=gens)
        out.append((rec.clamp(0, 1) * 255.0).round().to(torch.uint8).cpu())
    return torch.cat(out)


def reconstruct_split(checkpoint_dir: str | Path, data_cfg: DataConfig, forward_steps: int, ddim_steps: int,
                      seed: int, cache_dir: str | Path | None = None, batch_size: int = 8,
                      device: str = "auto", progress: bool = False) -> tuple[dict, torch.Tensor, bool]:
    """(test split dict from load_split, reconstructions uint8 (N,3,H,W), cache hit) for a checkpoint.

    Cached under cache_dir/recon/<key>, key = (checkpoint content hash, test data, T, DDIM steps, seed).
    """
    checkpoint_dir = resolve_checkpoint(checkpoint_dir)
    samples = load_samples(data_cfg, "test")
    if not samples:
        raise DiadError(f"data: no test images found for {data_cfg.format} at {data_cfg.root}")
    split = load_split(samples, data_cfg.image_size)
    key = {"checkpoint": ckpt.content_hash(checkpoint_dir), "data": _test_data_key(data_cfg),
           "forward_steps": forward_steps, "ddim_steps": ddim_steps, "seed": seed}
    path = Path(cache_dir if cache_dir is not None else cache_root()) / "recon" / config_hash(key)
    if (path / "recons.safetensors").is_file():
        recons = load_file(str(path / "recons.safetensors"))["recons"]
        if json.loads((path / "paths.json").read_text()) == split["paths"]:
            return split, recons, True
    dev = resolve_device(device)
    model, _ = load_trained(checkpoint_dir, dev)
    keys = ["/".join(Path(p).parts[-3:]) for p in split["paths"]]  # category/defect/name
    recons = _reconstruct_all(model, split["images"], keys, forward_steps, ddim_steps, seed, batch_size, dev, progress)
    with atomic_dir(path) as tmp:
        save_file({"recons": recons.contiguous()}, str(tmp / "recons.safetensors"))
        (tmp / "paths.json").write_text(json.dumps(split["paths"]))
        (tmp / "key.json").write_text(json.dumps(key, indent=1, sort_keys=True))
    return split, recons, False


# ---- evaluation ---------------------------------------------------------------------------------------

def score_split(split: dict, recons: torch.Tensor, eval_cfg, device: torch.device) -> tuple[np.ndarray, np.ndarray, str]:
    """(maps (N,H,W) float32, image scores (N,), backbone weights source) for a split and its reconstructions."""
    extractor = load_backbone(eval_cfg.backbone, eval_cfg.backbone_weights, eval_cfg.layers,
                              allow_random=eval_cfg.allow_random_backbone).to(device)
    maps = []
    for i in range(0, len(recons), eval_cfg.batch_size):
        x = to_float(split["images"][i:i + eval_cfg.batch_size], device)
        r = to_float(recons[i:i + eval_cfg.batch_size], device)
        maps.append(anomaly_maps(extractor, x, r, sigma=eval_cfg.sigma).float().cpu())
    maps_t = torch.cat(maps)
    scores = image_scores(maps_t, eval_cfg.score_rule, k=eval_cfg.topk)
    return maps_t.numpy(), scores.numpy(), extractor.weights_source


def evaluate(checkpoint_dir: str | Path, data_cfg: DataConfig | None = None, eval_cfg=None,
             cache_dir: str | Path | None = None, progress: bool = False) -> EvalResult:
    """Metrics on the TEST split per category and their mean; data/eval default to the checkpoint's config."""
    t0 = time.perf_counter()
    checkpoint_dir = resolve_checkpoint(checkpoint_dir)
    run_cfg = RunConfig.model_validate(ckpt.read_config(checkpoint_dir))
    data_cfg, eval_cfg = data_cfg or run_cfg.data, eval_cfg or run_cfg.eval
    if data_cfg.image_size != run_cfg.model.image_size:
        raise DiadError(f"data.image_size={data_cfg.image_size}: the checkpoint was trained at "
                        f"{run_cfg.model.image_size} px; evaluate at that size")
    _setup(eval_cfg.num_threads, eval_cfg.seed)
    device = resolve_device(eval_cfg.device)
    split, recons, cached = reconstruct_split(checkpoint_dir, data_cfg, eval_cfg.forward_steps, eval_cfg.ddim_steps,
                                              eval_cfg.seed, cache_dir, eval_cfg.batch_size, eval_cfg.device, progress)
    maps, scores, weights_source = score_split(split, recons, eval_cfg, device)
    pixel = split["has_masks"]
    per_category = evaluate_by_category(split["categories"], split["labels"], scores,
                                        split["masks"].numpy() if pixel else None, maps if pixel else None)
    n_images = {c: split["categories"].count(c) for c in sorted(set(split["categories"]))}
    n_images["mean"] = len(split["categories"])
    wall = time.perf_counter() - t0
    protocol = {"resolution": data_cfg.image_size, "mask_rule": MASK_RULE, "score_rule": eval_cfg.score_rule,
                "pro_definition": PRO_DEFINITION, "backbone": eval_cfg.backbone, "backbone_weights": weights_source,
                "layers": list(eval_cfg.layers), "sigma": eval_cfg.sigma, "forward_steps": eval_cfg.forward_steps,
                "ddim_steps": eval_cfg.ddim_steps, "split": "test"}
    return EvalResult(per_category, n_images, wall, len(recons) / max(wall, 1e-9), cached, protocol)

"""Quality benchmark: DiAD (cpu profile) vs LDM (= SD only), DDPM and a PatchCore-style baseline, over seeds.

Same data split (the training images the diffusion models see, i.e. after the held-out validation normals
are removed), same backbone (the packaged ImageNet EfficientNet-Lite0) for every method. ELPV has image labels
only; the synthetic-defect set adds pixel metrics.

    .venv/bin/python bench/bench_quality.py --dataset elpv --image-size 128 --methods patchcore
    .venv/bin/python bench/bench_quality.py --dataset elpv --image-size 64 --steps 300
    .venv/bin/python bench/bench_quality.py --dataset synth --methods patchcore,diad,ldm --seeds 0,1,2
    .venv/bin/python bench/bench_quality.py --smoke        # seconds: tiny synth set, 2 training steps

Each diffusion method is trained and evaluated once per seed (train.seed = eval.seed); the summary table gives
mean and std over seeds (population std) of the category-mean metrics and of the diagnostics. The PatchCore-style
baseline has no random part with the full memory bank: it runs once.

Writes bench/results/quality_<dataset>_<size>px.{json,md} (smoke: into --out-dir, default a temp dir).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchlib import RESULTS_DIR, main_keeping_threads, markdown_table, work_dir, write_results
from patchcore import DEFAULT_LAYERS, PatchCore

from diad.config import build_run_config, train_hash
from diad.data import DataConfig, load_samples, split_train_val
from diad.metrics import IMAGE_METRICS, PIXEL_METRICS, PRO_DEFINITION, evaluate_by_category
from diad.pipeline import evaluate, train
from diad.scoring import load_backbone
from diad.profiles import PROFILES
from diad.train import decode_split

METHODS = ("diad", "ldm", "ddpm", "patchcore")
PIXEL_SHOWN = ("pixel_auroc", "pixel_ap", "pixel_f1max", "pixel_aupro")


def data_config(dataset: str, image_size: int, smoke: bool) -> DataConfig:
    """The one DataConfig every method uses (smoke: a tiny generated synth set, one category)."""
    if smoke:
        return DataConfig(format="synth", image_size=image_size, categories=["brick"], synth_train_per_category=6,
                          synth_test_per_category=4, synth_image_size=image_size)
    return DataConfig(format=dataset, image_size=image_size)


# ---- PatchCore-style baseline -------------------------------------------------------------------------

def run_patchcore(data_cfg: DataConfig, args) -> tuple[dict, dict]:
    """One memory bank per category from the DiAD training images; -> (per-category metrics, info)."""
    t0 = time.perf_counter()
    train_samples, _ = split_train_val(load_samples(data_cfg, "train"), data_cfg.val_fraction, data_cfg.split_seed)
    test_samples = load_samples(data_cfg, "test")
    extractor = load_backbone("efficientnet_lite0", layers=args.patchcore_layers)
    train_split = decode_split(train_samples, data_cfg.image_size)
    test = decode_split(test_samples, data_cfg.image_size)
    maps = torch.zeros(test.masks.shape)
    scores = torch.zeros(len(test_samples))
    bank_sizes = {}
    for cat in sorted(set(test.categories)):
        tr = [i for i, c in enumerate(train_split.categories) if c == cat]
        te = torch.tensor([i for i, c in enumerate(test.categories) if c == cat])
        model = PatchCore(extractor, coreset_fraction=args.coreset, sigma=args.sigma).fit(train_split.images[tr])
        bank_sizes[cat] = len(model.bank)
        maps[te], scores[te] = model.predict(test.images[te].float() / 255.0)
    pixel = test.has_masks
    per_cat = evaluate_by_category(test.categories, test.labels, scores.numpy(),
                                   test.masks.numpy() if pixel else None, maps.numpy() if pixel else None)
    info = {"wall_s": time.perf_counter() - t0, "layers": list(args.patchcore_layers), "coreset": args.coreset,
            "bank_sizes": bank_sizes, "n_train": len(train_samples), "n_test": len(test_samples),
            "backbone_weights": extractor.weights_source}
    return per_cat, info


# ---- diffusion methods via the pipeline ---------------------------------------------------------------

def run_config(variant: str, data_cfg: DataConfig, args, seed: int = 0):
    """The cpu-profile RunConfig of `variant` at the bench's size and training budget."""
    raw = {"data": data_cfg.model_dump(mode="json"),
           "model": {"profile": "cpu", "variant": variant},
           "train": {"steps": args.steps, "autoencoder": {"steps": args.ae_steps}, "seed": seed,
                     "checkpoint_every": args.steps, "num_threads": args.threads},
           "eval": {"seed": seed, **({"ddim_steps": args.ddim_steps} if args.ddim_steps else {})}}
    if args.smoke:
        raw["train"].update(batch_size=2, val_batches=1)
        raw["train"]["autoencoder"]["batch_size"] = 2
        raw["eval"].update(forward_steps=20)
    return build_run_config(raw, f"bench_quality:{variant}")


def run_diffusion(variant: str, data_cfg: DataConfig, args, root: Path, seed: int = 0) -> tuple[dict, dict]:
    """Train (cached by the pipeline's resume logic) and evaluate one variant; -> (per-category metrics, info)."""
    cfg = run_config(variant, data_cfg, args, seed)
    # the content hash keeps runs of different configs apart (the cpu profile's defaults may change between runs)
    out = root / (f"{data_cfg.format}-{data_cfg.image_size}px-{variant}-s{args.steps}-ae{args.ae_steps}-seed{seed}"
                  f"-{train_hash(cfg)[:8]}")
    tr = train(cfg, out, cache_dir=root / "cache", progress=not args.quiet)
    ev = evaluate(tr.checkpoint_dir, cache_dir=root / "cache", progress=not args.quiet)
    info = {"train_steps": tr.steps, "ae_steps": cfg.train.autoencoder.steps, "batch_size": cfg.train.batch_size,
            "train_wall_s": tr.wall_s, "train_images_per_s": tr.images_per_s, "ae_cached": tr.ae_cached,
            "final_loss": tr.final_loss, "val_loss": tr.val_loss, "eval_wall_s": ev.wall_s,
            "recon_cached": ev.recon_cached, "protocol": ev.protocol, "diagnostics": ev.diagnostics}
    return ev.per_category, info


def over_seeds(runs: dict[int, dict]) -> tuple[dict, dict]:
    """{seed: per-category metrics} -> (mean, std) per category and metric, over seeds (population std)."""
    first = next(iter(runs.values()))
    mean = {c: {k: float(np.mean([r[c][k] for r in runs.values()])) for k in first[c]} for c in first}
    std = {c: {k: float(np.std([r[c][k] for r in runs.values()])) for k in first[c]} for c in first}
    return mean, std


# ---- report -------------------------------------------------------------------------------------------

def _pm(values: list[float]) -> str:
    """'mean ± std' over seeds (3 decimals); one value alone is printed as it is."""
    if not values or all(v != v for v in values):
        return "-"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def summary(results: dict[str, dict], pixel: bool) -> str:
    """Methods x (category-mean metrics and diagnostics), mean ± std over seeds."""
    keys = ["image_auroc"] + (["pixel_auroc", "pixel_aupro"] if pixel else [])
    diags = ["diag_sg_influence_t999", "diag_sg_influence_t600", "diag_hint_sensitivity", "diag_recon_l1_normal",
             "diag_ae_floor_l1"]
    header = ["method", "seeds"] + [k.replace("_", " ") for k in keys] + [d.removeprefix("diag_") for d in diags]
    rows = []
    for method, r in results.items():
        per_seed = r.get("per_seed") or {"-": {"metrics": r["metrics"], "info": r["info"]}}
        vals = [[s["metrics"]["mean"][k] for s in per_seed.values()] for k in keys]
        dvals = [[s["info"].get("diagnostics", {}).get(d, float("nan")) for s in per_seed.values()] for d in diags]
        rows.append([method, ",".join(map(str, per_seed))] + [_pm(v) for v in vals] + [_pm(v) for v in dvals])
    return markdown_table(header, rows)


def tables(results: dict[str, dict], pixel: bool) -> str:
    """One markdown table per metric group: rows = method, columns = category x metric (mean over seeds)."""
    cats = [c for c in next(iter(results.values()))["metrics"] if c != "mean"] + ["mean"]
    out = []
    for keys in [IMAGE_METRICS] + ([PIXEL_SHOWN] if pixel else []):
        header = ["method"] + [f"{c} {k.replace('_', ' ')}" for c in cats for k in keys]
        rows = [[m] + [r["metrics"][c][k] for c in cats for k in keys] for m, r in results.items()]
        out.append(markdown_table(header, rows))
    return "\n\n".join(out)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=("elpv", "synth"), default="elpv")
    ap.add_argument("--image-size", type=int, default=None, help="default 64 (the cpu profile's size); smoke: 64")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    cpu = PROFILES["cpu"]["train"]
    ap.add_argument("--steps", type=int, default=cpu["steps"], help="denoiser optimizer steps per diffusion model "
                    "(default: the cpu profile's)")
    ap.add_argument("--ae-steps", type=int, default=cpu["autoencoder"]["steps"], help="autoencoder steps (one AE shared by "
                    "diad and ldm; default: the cpu profile's)")
    ap.add_argument("--ddim-steps", type=int, default=None, help="default: the cpu profile's eval.ddim_steps")
    ap.add_argument("--seeds", default="0,1,2", help="comma list: one training + evaluation per seed")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's; use 1 on a loaded machine)")
    ap.add_argument("--patchcore-layers", type=lambda s: tuple(int(x) for x in s.split(",")), default=DEFAULT_LAYERS)
    ap.add_argument("--coreset", type=float, default=None, help="random coreset fraction of the memory bank")
    ap.add_argument("--sigma", type=float, default=4.0, help="PatchCore map smoothing")
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument("--tag", default="", help="suffix of the result file names")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny synth set, 2 denoiser steps, no AE stage (for the test)")
    args = ap.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        ap.error(f"--methods: unknown {bad}; expected some of {', '.join(METHODS)}")
    if args.smoke:
        args.dataset, args.image_size, args.steps, args.ae_steps, args.ddim_steps = "synth", 64, 2, 0, 2
        args.seeds = args.seeds[:1]
        args.quiet, args.threads = True, args.threads or 1
    args.image_size = args.image_size or 64
    return args


def _run(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="bench-smoke-")) if args.smoke else RESULTS_DIR)
    root = Path(tempfile.mkdtemp(prefix="bench-quality-")) if args.smoke else work_dir("quality")
    data_cfg = data_config(args.dataset, args.image_size, args.smoke)
    results: dict[str, dict] = {}
    for method in args.methods:
        t0 = time.perf_counter()
        if method == "patchcore":
            metrics, info = run_patchcore(data_cfg, args)
            results[method] = {"metrics": metrics, "info": info, "wall_s": time.perf_counter() - t0}
        else:
            per_seed = {}
            for seed in args.seeds:
                m, info = run_diffusion(method, data_cfg, args, root, seed)
                per_seed[seed] = {"metrics": m, "info": info}
                print(f"{method} seed {seed}: mean image AUROC {m['mean']['image_auroc']:.4f}", flush=True)
            metrics, std = over_seeds({s: r["metrics"] for s, r in per_seed.items()})
            results[method] = {"metrics": metrics, "std": std, "per_seed": per_seed,
                               "info": per_seed[args.seeds[0]]["info"], "wall_s": time.perf_counter() - t0}
        print(f"{method}: mean image AUROC {results[method]['metrics']['mean']['image_auroc']:.4f} "
              f"({results[method]['wall_s']:.0f} s)", flush=True)
    pixel = args.dataset == "synth"
    budget = (f"; diffusion models: cpu profile, denoiser steps {args.steps}, AE steps {args.ae_steps}, "
              f"DDIM {args.ddim_steps or 'profile'}, seeds {args.seeds}") if set(args.methods) - {"patchcore"} else ""
    pc = (f"; patchcore: layers {list(args.patchcore_layers)}, coreset {args.coreset or 'none (full bank)'}"
          if "patchcore" in args.methods else "")
    md = (f"Quality on {args.dataset} at {args.image_size} px{budget}{pc}\n\nMean ± std over seeds:\n\n"
          + summary(results, pixel) + "\n\nPer category (mean over seeds):\n\n" + tables(results, pixel))
    print("\n" + md)
    name = f"quality_{args.dataset}_{args.image_size}px{args.tag}"
    payload = {"dataset": args.dataset, "image_size": args.image_size, "data_config": data_cfg.model_dump(mode="json"),
               "pro_definition": PRO_DEFINITION, "pixel_keys": list(PIXEL_METRICS), "args": vars(args) | {"out_dir": str(out_dir)},
               "results": results}
    js, _ = write_results(name, payload, md, out_dir)
    print(f"wrote {js}")
    if args.smoke:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def main(argv=None) -> int:
    return main_keeping_threads(_run, argv)


if __name__ == "__main__":
    sys.exit(main())

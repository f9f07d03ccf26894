"""Design probe for the `cpu` profile: train variants with config overrides, then sweep eval T, sigma and score rule.

One training per (variant, seed); each is evaluated on a seeded subset of the test split at every T of --T
(one reconstruction pass per T), each pass re-scored at every --sigma x --rule (feature extraction only), plus
the diad.diagnostics figures at the first T. Used to choose the profile (docs/cpu-profile-design.md).

    .venv/bin/python bench/probe_profile.py --dataset synth --variants diad,ldm --seeds 0,1 \\
        --set model.unet_block_out_channels=[16,32,64] --T 600,1000 --sigma 1,2,4 --rule max,topk_mean --tag _x

Writes bench/results/probe_<dataset><tag>.{json,md}; --smoke runs a tiny version for the test.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchlib import RESULTS_DIR, main_keeping_threads, markdown_table, work_dir, write_results

from diad.config import build_run_config, train_hash
from diad.data import load_samples
from diad.diagnostics import diagnose
from diad.metrics import evaluate_by_category
from diad.overrides import apply_overrides, deep_merge, parse_overrides
from diad.pipeline import load_trained, train
from diad.pipeline.reconstruction import image_keys, reconstruct_images
from diad.scoring import anomaly_maps, image_scores, load_backbone
from diad.train import DecodedSplit, decode_split
from diad.train.batches import generator, to_float


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=("elpv", "synth"), default="synth")
    ap.add_argument("--variants", default="diad,ldm")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--set", action="append", default=[], help="override section.key=value (model/train/data)")
    ap.add_argument("--T", default="600,1000", help="eval forward steps to try")
    ap.add_argument("--ddim-steps", type=int, default=10)
    ap.add_argument("--sigma", default="4", help="map smoothing sigmas to try")
    ap.add_argument("--rule", default="max", help="score rules to try")
    ap.add_argument("--test-subset", type=int, default=0, help="seeded subset of the test split (0 = all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.smoke:
        args.dataset, args.variants, args.T, args.ddim_steps = "synth", "diad", "20", 2
        args.set = [*args.set, "train.steps=2", "train.autoencoder.steps=0", "train.batch_size=2", "train.val_batches=1",
                    "data.categories=[brick]", "data.synth_train_per_category=6", "data.synth_test_per_category=4",
                    "data.synth_image_size=64"]
    return args


def _subset(split: DecodedSplit, n: int, seed: int = 0) -> DecodedSplit:
    if n <= 0 or n >= len(split):
        return split
    idx = torch.randperm(len(split), generator=generator(seed, "probe-subset"))[:n].sort().values
    pick = lambda xs: [xs[i] for i in idx.tolist()]  # noqa: E731
    return dataclasses.replace(split, images=split.images[idx], masks=split.masks[idx], labels=pick(split.labels),
                               categories=pick(split.categories), paths=pick(split.paths))


def _run(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    # bench_quality's work dir and run names: its runs reuse the checkpoints trained here (and the reverse)
    root = Path(tempfile.mkdtemp(prefix="probe-")) if args.smoke else work_dir("quality")
    out_dir = args.out_dir or (root if args.smoke else RESULTS_DIR)
    user = parse_overrides(args.set)
    ts, sigmas, rules = [int(t) for t in _floats(args.T)], _floats(args.sigma), args.rule.split(",")
    extractor = load_backbone("efficientnet_lite0")
    rows, records = [], []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for variant in args.variants.split(","):
            raw = apply_overrides({"data": {"format": args.dataset, "image_size": 64}, "model": {"profile": "cpu"},
                                   "train": {"num_threads": args.threads}}, user)
            raw = deep_merge(raw, {"model": {"variant": variant}, "train": {"seed": seed}, "eval": {"seed": 0}})
            cfg = build_run_config(raw, "probe")
            cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"image_size": cfg.model.image_size})})
            out = root / (f"{cfg.data.format}-{cfg.data.image_size}px-{variant}-s{cfg.train.steps}-"
                          f"ae{cfg.train.autoencoder.steps}-seed{seed}-{train_hash(cfg)[:8]}")
            t0 = time.perf_counter()
            tr = train(cfg, out, cache_dir=root / "cache", progress=False)
            train_s = time.perf_counter() - t0
            model, _ = load_trained(tr.checkpoint_dir)
            split = _subset(decode_split(load_samples(cfg.data, "test"), cfg.data.image_size), args.test_subset)
            pixel = split.has_masks
            for T in ts:
                t1 = time.perf_counter()
                recon = cfg.eval.recon.model_copy(update={"forward_steps": T, "ddim_steps": min(args.ddim_steps, T),
                                                          "seed": 0})
                rec = reconstruct_images(model, split.images, image_keys(split), recon, 16, torch.device("cpu"))
                diag = diagnose(model, split, rec, recon, 8) if T == ts[0] else {}
                raw_maps = []
                for i in range(0, len(rec), 32):
                    raw_maps.append(anomaly_maps(extractor, to_float(split.images[i:i + 32]),
                                                 to_float(rec[i:i + 32]), sigma=0.0).float())
                raw_maps = torch.cat(raw_maps)
                from diad.scoring.anomaly_map import gaussian_blur

                for sigma in sigmas:
                    maps = gaussian_blur(raw_maps, sigma) if sigma > 0 else raw_maps
                    for rule in rules:
                        if rule == "authors_pool" and maps.shape[-1] < 57:
                            continue
                        scores = image_scores(maps, rule)
                        m = evaluate_by_category(split.categories, split.labels, scores.numpy(),
                                                 split.masks.numpy() if pixel else None,
                                                 maps.numpy() if pixel else None)["mean"]
                        rec_ = {"variant": variant, "seed": seed, "T": T, "sigma": sigma, "rule": rule,
                                "image_auroc": m["image_auroc"], "pixel_auroc": m["pixel_auroc"],
                                "pixel_aupro": m["pixel_aupro"], "train_s": train_s,
                                "eval_s": time.perf_counter() - t1, "val_loss": tr.val_loss, **diag}
                        records.append(rec_)
                        rows.append([variant, seed, T, sigma, rule, m["image_auroc"], m["pixel_auroc"],
                                     m["pixel_aupro"], diag.get("diag_sg_influence_t999", float("nan")),
                                     diag.get("diag_hint_sensitivity", float("nan")), train_s])
                        print(rows[-1], flush=True)
    md = (f"probe on {args.dataset}, overrides {args.set}\n\n"
          + markdown_table(["variant", "seed", "T", "sigma", "rule", "image auroc", "pixel auroc", "pixel aupro",
                            "sg infl t999", "hint sens", "train s"], rows))
    # mean over seeds per (variant, T, sigma, rule)
    agg = {}
    for r in records:
        agg.setdefault((r["variant"], r["T"], r["sigma"], r["rule"]), []).append(r["image_auroc"])
    md += "\n\n" + markdown_table(["variant", "T", "sigma", "rule", "image auroc mean", "std", "n"],
                                  [[*k, float(np.mean(v)), float(np.std(v)), len(v)] for k, v in agg.items()])
    print("\n" + md)
    write_results(f"probe_{args.dataset}{args.tag}", {"args": vars(args) | {"out_dir": str(out_dir)},
                                                      "records": records}, md, out_dir)
    return 0


def main(argv=None) -> int:
    return main_keeping_threads(_run, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Why does a diffusion model trail PatchCore? Re-score a bench_quality checkpoint under other eval settings.

Uses the checkpoints and the reconstruction cache bench_quality.py left under <cache>/bench/quality, so score
rules and layers cost only feature extraction; other forward steps T need new reconstructions (T=1 with one DDIM
step is almost the autoencoder's round trip).

    .venv/bin/python bench/diagnose_quality.py --dataset elpv --variant diad --steps 600 --ae-steps 400
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from benchlib import RESULTS_DIR, markdown_table, work_dir, write_results

from diad.config import EvalConfig
from diad.errors import DiadError
from diad.pipeline import evaluate

SETTINGS = [  # (label, EvalConfig overrides)
    ("T=1000, DDIM 10, authors_pool (bench default)", {}),
    ("T=1000, DDIM 10, max", {"score_rule": "max"}),
    ("T=1000, DDIM 10, topk_mean", {"score_rule": "topk_mean"}),
    ("T=1000, DDIM 10, max, layers 2,3", {"score_rule": "max", "layers": [2, 3]}),
    ("T=300, DDIM 3, authors_pool", {"forward_steps": 300, "ddim_steps": 3}),
    ("T=1, DDIM 1 (about the autoencoder round trip)", {"forward_steps": 1, "ddim_steps": 1}),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=("elpv", "synth"), default="elpv")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--variant", default="diad")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--ae-steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    root = work_dir("quality")
    prefix = f"{args.dataset}-{args.image_size}px-{args.variant}-s{args.steps}-ae{args.ae_steps}-seed{args.seed}"
    runs = sorted(root.glob(prefix + "*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise DiadError(f"no {root}/{prefix}*: run bench_quality.py with the same dataset/size/steps first")
    run = runs[-1]  # the newest run of that budget
    rows, out = [], []
    for label, kw in SETTINGS:
        ev = evaluate(run, eval_cfg=EvalConfig(seed=args.seed, batch_size=16, **kw), cache_dir=root / "cache")
        aurocs = {c: m["image_auroc"] for c, m in ev.per_category.items()}
        out.append({"setting": label, "eval": kw, "image_auroc": aurocs, "wall_s": ev.wall_s,
                    "recon_cached": ev.recon_cached})
        rows.append([label] + [aurocs[c] for c in aurocs] + [ev.wall_s])
        print(label, {c: round(v, 3) for c, v in aurocs.items()}, flush=True)
    cats = list(out[0]["image_auroc"])
    md = (f"{args.variant} on {args.dataset} at {args.image_size} px ({args.steps} steps): image AUROC\n\n"
          + markdown_table(["eval setting"] + [f"{c} image auroc" for c in cats] + ["wall s"], rows))
    print("\n" + md)
    write_results(f"diagnose_{args.dataset}_{args.image_size}px_{args.variant}", {"run": str(run), "rows": out}, md,
                  RESULTS_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The result schema, in one place: metric names, protocol keys and every result column with its type.

Torch-free and pyarrow-free: the core (what it computes), the sweep layer (Parquet types) and `analysis`
(pandas dtypes) all read it. docs/results-schema.md holds the table `python -m diad.schema` prints; a test
checks that the two agree. Adding a metric = its name and meaning here + its computation in diad/metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["string", "float", "int", "bool", "timestamp"]

# *_flipped_legacy: the DiAD authors' AUROC (their eval_helper flips one below 0.5), for comparison only
IMAGE_METRICS = ("image_auroc", "image_ap", "image_f1max", "image_auroc_flipped_legacy")
PIXEL_METRICS = ("pixel_auroc", "pixel_ap", "pixel_f1max", "pixel_aupro", "pixel_pro_legacy",
                 "pixel_auroc_flipped_legacy")
METRICS = IMAGE_METRICS + PIXEL_METRICS
# Is the conditioning used? Per-run figures of diad.diagnostics (definitions there), repeated on each category's
# row; NaN where not defined (e.g. defect-pixel error without masks) or when eval.diag_images=0.
DIAG_TIMESTEPS = (999, 600, 300)
DIAGNOSTICS = (
    *(f"diag_sg_influence_t{t}" for t in DIAG_TIMESTEPS),
    *(f"diag_eps_mse_t{t}" for t in DIAG_TIMESTEPS),
    "diag_hint_sensitivity", "diag_recon_l1_normal", "diag_recon_l1_defect", "diag_recon_l1_anomalous",
    "diag_ae_floor_l1",
)
DIAGNOSTIC_MEANINGS = {
    **{f"diag_sg_influence_t{t}": f"rms change of the predicted noise with the SG residuals on vs off at t={t} "
       "(0 for ldm/ddpm)" for t in DIAG_TIMESTEPS},
    **{f"diag_eps_mse_t{t}": f"noise-prediction MSE of the full model at t={t} on test images" for t in DIAG_TIMESTEPS},
    "diag_hint_sensitivity": "mean L1 change of a reconstruction when the hint is another test image (0 = hint unused)",
    "diag_recon_l1_normal": "mean reconstruction L1 on normal pixels at the eval T",
    "diag_recon_l1_defect": "mean reconstruction L1 on defect pixels (NaN without masks)",
    "diag_recon_l1_anomalous": "mean reconstruction L1 over anomalous images",
    "diag_ae_floor_l1": "autoencoder round-trip L1 on normal test images: the floor of every latent reconstruction",
}
# What makes two numbers comparable, recorded with every result (as protocol.<key> columns).
PROTOCOL_KEYS = ("resolution", "mask_rule", "score_rule", "pro_definition")
# The keys of one result: which trial, which run (with and without seeds), which checkpoint, which evaluation.
KEY_COLUMNS = ("trial_id", "run_key", "config_hash", "train_hash", "eval_hash")
CONFIG_SECTIONS = ("data", "model", "train", "eval")
MEAN_CATEGORY = "mean"  # the `category` of the row holding the mean over categories


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    meaning: str


METRIC_MEANINGS = {
    "image_auroc": "image-level AUROC (never flipped below 0.5); NaN when undefined",
    "image_ap": "image-level average precision",
    "image_f1max": "image-level best F1 over thresholds",
    "pixel_auroc": "pixel-level AUROC; NaN when the data has no masks",
    "pixel_ap": "pixel-level average precision",
    "pixel_f1max": "pixel-level best F1 over thresholds",
    "pixel_aupro": "exact MVTec AU-PRO up to FPR 0.3 (diad.metrics.PRO_DEFINITION)",
    "pixel_pro_legacy": "the authors' PRO (200 thresholds, FPR rescaled): never call it PRO",
    "image_auroc_flipped_legacy": "max(image AUROC, 1 - it), as the authors' eval_helper reports it: only for "
                                  "comparing with their published numbers",
    "pixel_auroc_flipped_legacy": "max(pixel AUROC, 1 - it), as the authors' eval_helper reports it: only for "
                                  "comparing with their published numbers",
}

_KEY_MEANINGS = {
    "trial_id": "Ray Tune trial id",
    "run_key": "hash of the full config, seeds included",
    "config_hash": "hash of the config without seeds (rows that differ only by seed share it)",
    "train_hash": "hash of the training-time config (the checkpoint cache key)",
    "eval_hash": "hash of the evaluation-time config",
}

# Every column but the config values (`data.*`, `model.*`, `train.*`, `eval.*`), in file order: the keys
# first, then (in the files) the config columns, then these.
COLUMNS: tuple[Column, ...] = (
    *(Column(k, "string", _KEY_MEANINGS[k]) for k in KEY_COLUMNS),
    Column("arm", "string", "the sweep spec's arm name (null when the spec has no arms)"),
    Column("category", "string", f"category name, or {MEAN_CATEGORY!r} for the mean over categories"),
    Column("n_test_images", "int", "test images scored in this category"),
    *(Column(m, "float", METRIC_MEANINGS[m]) for m in METRICS),
    *(Column(d, "float", DIAGNOSTIC_MEANINGS[d]) for d in DIAGNOSTICS),
    Column("pixel_metrics_note", "string", "why this row's pixel metrics are NaN (no complete masks), else null"),
    Column("status", "string", '"ok" or "failed"'),
    Column("error", "string", "one-line error when failed, else null"),
    Column("train_wall_s", "float", "seconds of training (of the trial that trained the checkpoint)"),
    Column("eval_wall_s", "float", "seconds of evaluation"),
    Column("train_images_per_s", "float", "training throughput"),
    Column("eval_images_per_s", "float", "evaluation throughput"),
    Column("peak_mem_mb", "float", "peak resident memory of the trial process (GPU peak when on GPU)"),
    Column("train_cached", "bool", "the checkpoint was reused"),
    Column("recon_cached", "bool", "the reconstructions were reused"),
    Column("backbone_weights", "string", '"packaged", a weights path, or "random"'),
    Column("git_sha", "string", "commit of the code that produced the row"),
    Column("git_dirty", "bool", "the working tree had uncommitted changes"),
    Column("versions", "string", "JSON {package: version}"),
    Column("hardware", "string", "CPU model and cores, GPU name"),
    Column("node_id", "string", "Ray node id of the node the trial ran on (hex)"),
    Column("node_ip", "string", "IP address of that Ray node"),
    Column("hostname", "string", "host name of the trial's process (socket.gethostname())"),
    Column("protocol.resolution", "int", "image size scored"),
    Column("protocol.mask_rule", "string", "how masks were binarised"),
    Column("protocol.score_rule", "string", "how an anomaly map becomes an image score"),
    Column("protocol.pro_definition", "string", "the exact AU-PRO definition"),
    Column("finished_at", "timestamp", "UTC time the trial wrote its rows"),
)
COLUMN_KINDS: dict[str, Kind] = {c.name: c.kind for c in COLUMNS}


def markdown_table() -> str:
    """The column table of docs/results-schema.md."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| {c.name} | {c.kind} | {c.meaning} |" for c in COLUMNS]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())

"""What was run, read from the result rows (and the sweep's saved plan, when there is one).

`describe_run` gives the facts a reader needs before any number (data, image size, model profile,
training length, seeds, backbone); `paper_comparable` says whether the paper's MVTec-AD numbers may sit
beside ours; `read_plan` reads the sweep's saved `sweep.json` (diad.sweep.layout, no Ray) for the planned arms
and trial count, so arms with no result yet can be listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import paper
from analysis.results import mean_rows
from diad.errors import DiadError
from diad.sweep.layout import read_meta


@dataclass
class Plan:
    """What a sweep set out to run: arm names in spec order, seeds, the number of grid points."""

    sweep_id: str
    arms: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    n_points: int | None = None
    description: str = ""


def read_plan(storage: str | Path, sweep_id: str) -> Plan | None:
    """The saved plan of a sweep (diad.sweep.layout: plain JSON, no Ray), or None when there is none."""
    try:
        meta = read_meta(str(storage), str(sweep_id))
    except (DiadError, ValueError, OSError):
        return None
    spec = meta.get("spec") or {}
    arms = [str(a.get("name", i)) for i, a in enumerate(spec.get("arms") or [])]
    return Plan(sweep_id=str(sweep_id), arms=arms, seeds=list(spec.get("seeds") or []),
                n_points=meta.get("n_points"), description=str(spec.get("description") or ""))


def _values(df: pd.DataFrame, col: str) -> list[str]:
    """Distinct values of a column as text (lists as "a, b"), in first-seen order; [] when absent."""
    if col not in df:
        return []
    out = []
    for v in df[col]:
        if isinstance(v, list):
            text = ", ".join(map(str, v)) if v else "(none)"
        elif v is None or (not isinstance(v, list) and pd.isna(v)):
            continue
        else:
            text = str(v)
        if text not in out:
            out.append(text)
    return out


def _one_or_varies(values: list[str], unknown: str = "not recorded") -> str:
    if not values:
        return unknown
    return values[0] if len(values) == 1 else f"varies: {'; '.join(values)}"


def describe_run(df: pd.DataFrame) -> list[tuple[str, str]]:
    """[(what, value)]: dataset and categories, image size, model profile, training, seeds, backbone, ..."""
    rows = mean_rows(df) if len(mean_rows(df)) else df
    cats = sorted({str(c) for c in df.get("category", pd.Series(dtype=object)).dropna()})
    data = _one_or_varies(_values(rows, "data.format"))
    roots = _values(rows, "data.root")
    data += f" at {_one_or_varies(roots)}" if roots else " (the embedded default set)"
    seeds = sorted(_values(rows, "train.seed"), key=lambda v: (len(v), v))  # numeric text: 2 before 10
    steps = _values(rows, "train.steps")
    epochs = _values(rows, "train.epochs")
    training = (f"{_one_or_varies(steps)} denoiser steps" if steps else f"{_one_or_varies(epochs)} epochs")
    ae = _values(rows, "train.autoencoder.steps") or _values(rows, "train.ae_steps")  # nested since issue 12
    if ae:
        training += f", {_one_or_varies(ae)} autoencoder steps"
    backbone = _one_or_varies(_values(rows, "eval.backbone"))
    recon = (f"T = {_one_or_varies(_values(rows, 'eval.forward_steps'))}, "
             f"{_one_or_varies(_values(rows, 'eval.ddim_steps'))} DDIM steps")
    return [
        ("dataset", data),
        ("categories", ", ".join(cats) if cats else "not recorded"),
        ("image size (px)", _one_or_varies(_values(rows, "data.image_size") or _values(rows, "protocol.resolution"))),
        ("model profile", _one_or_varies(_values(rows, "model.profile"))),
        ("training", training),
        ("seeds", f"{len(seeds)} ({', '.join(seeds)})" if seeds else "not recorded"),
        ("anomaly-map backbone", backbone),
        ("backbone weights", _one_or_varies(_values(rows, "backbone_weights"))),
        ("feature layers", _one_or_varies(_values(rows, "eval.layers"))),
        ("reconstruction", recon),
        ("image score", _one_or_varies(_values(rows, "eval.score_rule") or _values(rows, "protocol.score_rule"))),
        ("hardware", _one_or_varies(_values(rows, "hardware"))),
        ("code", _one_or_varies(_values(rows, "git_sha"))),
    ]


def paper_comparable(df: pd.DataFrame) -> tuple[bool, str]:
    """(True, "") when every row is the paper's setting (MVTec-AD, all 15 categories, paper profile, 256 px);
    else (False, why not), naming what differs."""
    rows = mean_rows(df) if len(mean_rows(df)) else df
    why = []
    formats = _values(rows, "data.format")
    if formats != ["mvtec"]:
        why.append(f"data is {', '.join(formats) or 'unknown'}, not MVTec-AD")
    profiles = _values(rows, "model.profile")
    if profiles != ["paper"]:
        why.append(f"model profile {', '.join(profiles) or 'unknown'}, not paper")
    sizes = _values(rows, "data.image_size") or _values(rows, "protocol.resolution")
    if sizes != ["256"]:
        why.append(f"image size {', '.join(sizes) or 'unknown'} px, not 256")
    cats = {str(c) for c in df.get("category", pd.Series(dtype=object)).dropna()}
    if formats == ["mvtec"] and cats != set(paper.MVTEC_CATEGORIES):
        why.append(f"{len(cats)} of the 15 MVTec-AD categories")
    return (not why, "; ".join(why))

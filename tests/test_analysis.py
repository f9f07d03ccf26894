"""analysis: loading Parquet results, tables, figures and the HTML report, on a small synthetic sweep."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import ablation_table, backbone_table, load_results, to_latex, to_markdown
from analysis import plots
from analysis.report import main_report, write_report
from diad.errors import DiadError

CATEGORIES = ("bottle", "cable")
IMAGE_BASE = {"ldm": 0.80, "msg": 0.90, "sgeb3": 0.91, "diad": 0.95}
PIXEL_BASE = {"ldm": 0.85, "msg": 0.97, "sgeb3": 0.90, "diad": 0.96}  # msg best in pixel AUROC
SWITCHES = {"ldm": (False, [], "none"), "msg": (True, [], "none"), "sgeb3": (True, ["sgeb3"], "none"),
            "diad": (True, ["sgeb3", "sgeb4"], "in_silu")}


def _config(variant="diad", seed=0, T=1000, ddim=10, backbone="resnet50", layers="2,3,4") -> dict:
    middle, levels, sff = SWITCHES[variant]
    return {"data.format": "synth", "data.image_size": 64,
            "data.split_seed": None if seed == 0 else 7,  # a seed column with nulls (NaN after loading)
            "model.pretrained_dir": None, "model.variant": variant, "model.sg.middle": middle,
            "model.sg.levels": levels, "model.sg.sff": sff, "train.steps": 10, "train.seed": seed,
            "eval.backbone": backbone, "eval.layers": layers, "eval.forward_steps": T, "eval.ddim_steps": ddim,
            "eval.sigma": 4.0, "eval.seed": 0}


def _rows(trial: str, cfg: dict, status="ok") -> list[dict]:
    """One row per category plus "mean"; metrics shift by 0.01 per seed so the std over 3 seeds is 0.01."""
    v, s = cfg["model.variant"], cfg["train.seed"]
    penalty = (1000 - cfg["eval.forward_steps"]) / 4000 + {"resnet50": 0, "resnet18": 0.02, "vgg16": 0.04}[
        cfg["eval.backbone"]] + (0.01 if cfg["eval.layers"] == "1,2,3" else 0) + abs(cfg["eval.ddim_steps"] - 10) / 1000
    out = []
    for i, cat in enumerate(CATEGORIES + ("mean",)):
        offset = {0: -0.02, 1: 0.02, 2: 0.0}[i]
        ok = status == "ok"
        out.append({"trial_id": trial, "run_key": f"rk-{trial}", "config_hash": f"ch-{v}", "train_hash": "th",
                    "eval_hash": "eh", **cfg, "category": cat, "n_test_images": 10,
                    "image_auroc": IMAGE_BASE[v] + offset + 0.01 * s - penalty if ok else np.nan,
                    "image_ap": 0.9 if ok else np.nan, "image_f1max": 0.9 if ok else np.nan,
                    "pixel_auroc": PIXEL_BASE[v] + offset + 0.01 * s - penalty if ok else np.nan,
                    "pixel_ap": 0.5, "pixel_f1max": 0.5, "pixel_aupro": 0.8 - penalty, "pixel_pro_legacy": 0.85,
                    "status": status, "error": None if ok else "RuntimeError: out of memory at step 3",
                    "train_wall_s": 12.0, "eval_wall_s": 3.0, "train_images_per_s": 5.0, "eval_images_per_s": 9.0,
                    "peak_mem_mb": 900.0, "train_cached": s > 0, "recon_cached": False, "backbone_weights": "random",
                    "git_sha": "abc123", "git_dirty": False, "versions": json.dumps({"torch": "2"}),
                    "hardware": "cpu x2", "protocol.resolution": 64, "protocol.mask_rule": ">0.5",
                    "protocol.score_rule": "authors_pool", "protocol.pro_definition": "exact",
                    "finished_at": pd.Timestamp("2025-01-01", tz="UTC")})
    return out


def _write(root: Path, sweep: str, trial: str, rows: list[dict], drop: tuple[str, ...] = ()) -> None:
    folder = root / "results" / f"sweep_id={sweep}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items() if k not in drop} for r in rows]),
                   folder / f"{trial}.parquet")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Two sweeps: s1 = variants x seeds, T and DDIM studies, a failed trial; s2 = backbone x layers."""
    root = tmp_path_factory.mktemp("runs")
    n = 0
    trials = [("s1", _config(v, s)) for v in ("ldm", "msg", "diad") for s in (0, 1, 2)]
    trials += [("s1", _config("diad", s, T=T)) for T in (200, 600) for s in (0, 1)]
    trials += [("s1", _config("diad", s, ddim=d)) for d in (5, 20) for s in (0, 1)]
    trials += [("s2", _config("diad", s, backbone=b, layers=ly)) for b in ("resnet18", "vgg16")
               for ly in ("1,2,3", "2,3,4") for s in (0, 1)]
    trials += [("s2", _config("diad", s, layers="1,2,3")) for s in (0, 1)]
    for sweep, cfg in trials:
        n += 1
        _write(root, sweep, f"t{n:03d}", _rows(f"t{n:03d}", cfg), drop=("peak_mem_mb",) if n == 1 else ())
    _write(root, "s1", "tfail", _rows("tfail", _config("sgeb3", 0), status="failed")[-1:])
    (root / "results" / "sweep_id=s1" / ".t999.parquet.tmp-1").write_bytes(b"half written")
    (root / "results" / "sweep_id=s1" / ".t998.parquet").write_bytes(b"half written")
    return root


@pytest.fixture(scope="module")
def df(runs) -> pd.DataFrame:
    return load_results(["s1", "s2"], storage=runs)


@pytest.fixture(scope="module")
def predictions(tmp_path_factory) -> Path:
    """`diad predict`-like PNGs: per image, separate input / recon / map / mask files."""
    import matplotlib.image as mpimg

    folder = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    for name in ("bottle_000", "cable_001"):
        for kind in ("input", "recon", "map", "mask"):
            mpimg.imsave(folder / f"{name}_{kind}.png", rng.random((16, 16, 3)) if kind != "mask"
                         else (rng.random((16, 16)) > 0.7).astype(float), cmap="gray")
    return folder


# ---- loading ---------------------------------------------------------------------------------------


def test_load_results_types_and_sweep_ids(df, runs):
    assert set(df["sweep_id"]) == {"s1", "s2"}
    assert df["trial_id"].nunique() == 28  # 27 ok + 1 failed; the dot files were skipped
    assert df["image_auroc"].dtype == "float64"
    assert isinstance(df["category"].dtype, pd.StringDtype) and isinstance(df["status"].dtype, pd.StringDtype)
    assert str(df["n_test_images"].dtype) == "Int64" and str(df["train_cached"].dtype) == "boolean"
    assert str(df["finished_at"].dt.tz) == "UTC"
    assert {tuple(v) for v in df["model.sg.levels"]} == {(), ("sgeb3",), ("sgeb3", "sgeb4")}  # lists as lists
    assert {tuple(v) for v in df["eval.layers"]} == {(1, 2, 3), (2, 3, 4)}  # legacy "1,2,3" text split
    assert str(df["train.seed"].dtype) == "Int64" and str(df["eval.sigma"].dtype) == "float64"
    assert str(df["model.sg.middle"].dtype) == "boolean" and isinstance(df["model.variant"].dtype, pd.StringDtype)
    assert df["data.split_seed"].isna().any() and str(df["data.split_seed"].dtype) == "Int64"  # missing as NA
    assert str(df["is_mean"].dtype) == "boolean" and df.loc[df["is_mean"], "category"].isna().all()
    assert set(df["category"].dropna()) == set(CATEGORIES)  # no "mean" pseudo-category
    assert df.loc[df["trial_id"] == "t001", "peak_mem_mb"].isna().all()  # file without the column
    assert (df["peak_mem_mb"] == 900.0).sum() == len(df) - 3
    same = load_results(runs / "results")
    assert len(same) == len(df) and set(same["sweep_id"]) == {"s1", "s2"}
    one = load_results(runs / "results" / "sweep_id=s2" / "t027.parquet")
    assert len(one) == 3 and set(one["sweep_id"]) == {"s2"}


def test_sweep_id_wins_over_a_same_named_local_folder(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s2").mkdir()  # an unrelated folder named like the sweep, in the working directory
    assert set(load_results("s2", storage=runs)["sweep_id"]) == {"s2"}


def test_load_results_errors_name_the_place(runs, tmp_path):
    with pytest.raises(DiadError, match="sweep_id=nope"):
        load_results("nope", storage=runs)
    with pytest.raises(DiadError, match="missing.parquet.*no such file or directory"):
        load_results(tmp_path / "missing.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DiadError, match="no result rows found in .*empty"):
        load_results(tmp_path / "empty")


# ---- tables ----------------------------------------------------------------------------------------


def test_ablation_table_rows_std_and_paper(df):
    t = ablation_table(df, with_paper=True)
    assert list(t.index) == ["ldm", "msg", "sgeb3", "diad"]  # paper order; the failed sgeb3 kept as failed
    assert t.loc["sgeb3", "status"] == "failed" and "out of memory" in t.loc["sgeb3", "error"]
    assert pd.isna(t.loc["sgeb3", "image_auroc mean"]) and t.loc["sgeb3", "n seeds"] == 0
    assert t.loc["diad", "label"] == "DiAD: SD + MSG + SGEB3 + SFF IN+SiLU"
    assert t.attrs["fixed"] == {"eval.backbone": "resnet50", "eval.layers": "2,3,4",
                                "eval.forward_steps": "1000", "eval.ddim_steps": "10"}
    assert t.loc["diad", "image_auroc mean"] == pytest.approx(0.96)
    assert t["image_auroc std"].dropna().to_numpy() == pytest.approx([0.01] * 3)
    assert list(t["n seeds"]) == [3, 3, 0, 3]
    assert t.loc["ldm", "paper image_auroc"] == pytest.approx(0.793)
    assert t.loc["diad", "paper pixel_auroc"] == pytest.approx(0.968)


def test_ties_in_a_full_factorial_hold_the_paper_setting():
    from analysis.results import cast_columns

    rows = [r for v in ("ldm", "diad") for b in ("resnet18", "resnet50") for d in (5, 10)
            for r in _rows(f"{v}{b}{d}", _config(v, 0, ddim=d, backbone=b))]
    t = ablation_table(cast_columns(pd.DataFrame(rows)))
    assert t.attrs["fixed"] == {"eval.backbone": "resnet50", "eval.ddim_steps": "10"}
    assert t.loc["ldm", "image_auroc mean"] == pytest.approx(0.80)


def test_paper_columns_only_beside_comparable_runs(df):
    t = ablation_table(df)  # synth data, 64 px: not the paper's setting
    assert not [c for c in t.columns if c.startswith("paper ")]
    assert "not comparable" in to_markdown(t) and "data is synth, not MVTec-AD" in t.attrs["paper_reason"]
    from analysis.tables import paper_reference

    ref = paper_reference(t)
    assert ref.loc["ldm", "image_auroc"] == pytest.approx(0.793)
    mvtec = df.assign(**{"data.format": "mvtec", "model.profile": "paper", "data.image_size": 256})
    mvtec["category"] = mvtec["category"].astype(object)
    from analysis.runinfo import paper_comparable

    assert paper_comparable(mvtec)[0] is False  # two of the 15 MVTec categories only
    from analysis import paper

    full = pd.concat([mvtec[mvtec["category"] == "bottle"].assign(category=c) for c in paper.MVTEC_CATEGORIES])
    assert paper_comparable(full) == (True, "")
    assert "paper image_auroc" in ablation_table(full, category="bottle").columns


def test_table_markdown_and_latex_mark_the_best(df):
    t = ablation_table(df, with_paper=True)
    md = {line.split("|")[1].strip().split("`")[-2] if "`" in line else line.split("|")[1].strip(): line
          for line in to_markdown(t).splitlines() if line.startswith("| ")}
    cells = {k: [c.strip() for c in v.split("|")[2:-1]] for k, v in md.items()}
    assert md["model.variant"].count("paper") == 2 and "MVTec-AD" in md["model.variant"]
    assert md["diad"].startswith("| DiAD: SD + MSG + SGEB3 + SFF IN+SiLU `diad` |")  # paper label, code name
    assert cells["sgeb3"][-1].startswith("failed: RuntimeError: out of memory")
    # columns: image ours, image paper, pixel ours, pixel paper, n seeds
    assert cells["diad"][0] == "**96.0 ± 1.0**" and cells["diad"][1] == "**97.2**"
    assert cells["msg"][2] == "**98.0 ± 1.0 ≈**" and not cells["diad"][2].startswith("**")
    assert cells["ldm"][0] == "81.0 ± 1.0" and cells["ldm"][4] == "3"
    tex = to_latex(t)
    assert r"\textbf{96.0 $\pm$ 1.0}" in tex and r"\textbf{98.0 $\pm$ 1.0 $\approx$}" in tex
    assert tex.count(r"\textbf") == 4 and r"model.variant" in tex and r"\end{tabular}" in tex
    assert r"{\small\texttt{diad}}" in tex


def test_backbone_table(df):
    t = backbone_table(df, with_paper=True)
    assert list(t.index) == ["vgg16", "resnet18", "resnet50"]
    assert t.attrs["fixed"]["model.variant"] == "diad" and t.attrs["fixed"]["eval.layers"] == "2,3,4"
    assert t.loc["resnet18", "image_auroc mean"] == pytest.approx(0.96 - 0.02 - 0.005)
    assert t.loc["vgg16", "paper pixel_aupro"] == pytest.approx(0.801)
    md = to_markdown(t)
    resnet50 = [line for line in md.splitlines() if line.startswith("| ResNet50 `resnet50` ")][0]
    assert "paper PRO" in md and resnet50.split("|")[2].strip() == "**96.0 ± 1.0**"
    single = backbone_table(df[df["sweep_id"] == "s1"])
    assert list(single.index) == ["resnet50"] and "**" not in to_markdown(single)  # nothing to compare


# ---- figures ---------------------------------------------------------------------------------------


def _check_figure(fig) -> None:
    """A title, labelled data axes holding something, and a non-trivial PNG."""
    assert fig is not None
    data_axes = [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]
    assert data_axes
    assert (fig._suptitle is not None and fig._suptitle.get_text()) or any(ax.get_title() for ax in data_axes)
    for ax in data_axes:
        assert ax.get_xlabel() and ax.get_ylabel()
        assert ax.lines or ax.patches or ax.images or ax.collections or ax.containers
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n" and len(buf.getvalue()) > 2000


def test_every_figure_renders(df, predictions):
    figures = {
        "T": plots.metric_vs(df, x="eval.forward_steps"),
        "ddim": plots.metric_vs(df, x="eval.ddim_steps"),
        "bars": plots.per_category_bars(df, "image_auroc"),
        "heatmap": plots.backbone_layer_heatmap(df, "pixel_auroc"),
        "parallel": plots.parallel_coordinates(df),
        "importance": plots.parameter_importance(df),
        "gallery": plots.gallery(predictions),
    }
    for name, fig in figures.items():
        _check_figure(fig)
    assert "evaluator: optuna Fanova" in figures["importance"].axes[0].get_title()
    t_axes = figures["T"].axes[0]
    assert t_axes.get_xlabel() == "forward diffusion steps T"
    diad_line = [c for c in t_axes.containers if c.get_label() == "diad"][0].lines[0]
    assert list(diad_line.get_xdata()) == [200, 600, 1000]
    assert len(figures["gallery"].axes) == 2 * 4
    assert t_axes.get_ylim() == (0.0, 100.0) and t_axes.get_ylabel().startswith("image_auroc (%)")
    cost = plots.cost_bars(df)  # two panels sharing the rows: only the left one has a y label
    assert cost.axes[0].get_xlim()[0] == 0.0 and cost.axes[1].get_xlabel().endswith("(MB)")
    assert [t.get_text() for t in cost.axes[0].get_yticklabels()] == ["diad", "msg", "ldm"]  # bottom up: ldm on top


def test_figures_skip_when_the_axis_does_not_vary(df, tmp_path):
    s2 = df[df["sweep_id"] == "s2"]
    assert plots.metric_vs(s2, x="eval.forward_steps") is None
    assert plots.metric_vs(s2, x="eval.ddim_steps") is None
    s1 = df[df["sweep_id"] == "s1"]
    assert plots.backbone_layer_heatmap(s1) is None
    assert plots.gallery(tmp_path) is None


def test_importance_ranks_the_switch_that_matters(df):
    from analysis.importance import importances

    values, name = importances(df[df["sweep_id"] == "s2"], "image_auroc")
    assert values.index[0] == "eval.backbone"  # 0.02-0.04 effect vs 0.01 for layers


def test_importance_fallback_is_named(df, monkeypatch):
    import analysis.importance as imp

    def broken(*args):
        raise RuntimeError("no fanova")

    monkeypatch.setattr(imp, "_fanova", broken)
    values, name = imp.importances(df[df["sweep_id"] == "s2"], "image_auroc")
    assert name.startswith("random-forest permutation importance") and "RuntimeError" in name
    assert values.index[0] == "eval.backbone"
    fig = imp.parameter_importance(df[df["sweep_id"] == "s2"], "image_auroc")
    assert "random-forest permutation" in fig.axes[0].get_title()


# ---- report ----------------------------------------------------------------------------------------


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.src, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.src.append(dict(attrs)["src"])


REPORT_SCRIPT = """
import sys
from analysis.report import main_report
page = main_report("s1", storage=sys.argv[1], predict_dir=sys.argv[2])
print("PAGE", page)
print("HEAVY", sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "ray")))
"""


def test_report_is_valid_html_with_existing_images_and_no_torch(runs, predictions):
    done = subprocess.run([sys.executable, "-c", REPORT_SCRIPT, str(runs), str(predictions)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "HEAVY []" in done.stdout  # analysis never imports torch or ray
    out = runs / "reports" / "s1"  # main_report's default output folder
    assert f"PAGE {out / 'index.html'}" in done.stdout
    page = (out / "index.html").read_text()
    parser = _Images()
    parser.feed(page)
    assert parser.tags[:1] == ["html"] and "table" in parser.tags
    assert len(parser.src) >= 7
    for src in parser.src:
        assert not src.startswith(("/", "http")) and (out / src).stat().st_size > 1000
    assert "RuntimeError: out of memory at step 3" in page and "failed: 1" in page
    assert (out / "table_results.md").exists() and (out / "table_results.tex").exists()
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_report_on_a_partial_sweep(df, tmp_path):
    partial = df[df["trial_id"].isin(["t001", "tfail"])]
    (tmp_path / "partial").mkdir()
    for name in ("heatmap_pixel_auroc.png", "mine.png"):  # a stale figure of an earlier report; a user's file
        (tmp_path / "partial" / name).write_bytes(b"x")
    page = write_report(partial, tmp_path / "partial", expected_trials=10)
    pngs = {p.name for p in page.parent.glob("*.png")}
    assert "mine.png" in pngs and "heatmap_pixel_auroc.png" not in pngs
    text = page.read_text()
    assert "Not drawn" in text and "ok: 1" in text and "failed: 1" in text
    assert "Not finished: 8 of 10 planned trials have no result yet" in text
    parser = _Images()
    parser.feed(text)
    assert all((page.parent / s).exists() for s in parser.src)



# ---- a sweep of named arms, with a failed arm and a planned arm without results -----------------------

ARMS = {"ldm": "ldm", "msg": "msg", "sgeb4": "diad", "diad_authors": "diad", "diad": "diad"}


@pytest.fixture(scope="module")
def arm_runs(tmp_path_factory) -> Path:
    """Sweep "abl": five arms x 2 seeds (sgeb4 and diad_authors identical), arm "sgeb3" failed, and the saved
    plan (sweep.json) also lists "diad_bn_relu", which has no result yet."""
    root = tmp_path_factory.mktemp("arms")
    for arm, variant in ARMS.items():
        for seed in (0, 1):
            rows = _rows(f"{arm}-{seed}", _config(variant, seed))
            if arm == "diad":
                rows = [dict(r, image_auroc=r["image_auroc"] + 0.005) for r in rows]
            _write(root, "abl", f"{arm}-{seed}", [dict(r, arm=arm) for r in rows])
    _write(root, "abl", "sgeb3-0", [dict(r, arm="sgeb3") for r in _rows("sgeb3-0", _config("sgeb3"), "failed")][-1:])
    spec = {"description": "Table 5 arms", "seeds": [0, 1],
            "arms": [{"name": a} for a in ("ldm", "msg", "sgeb3", "sgeb4", "diad_bn_relu", "diad", "diad_authors")]}
    (root / "abl").mkdir()
    (root / "abl" / "sweep.json").write_text(json.dumps({"spec": spec, "n_points": 14}))
    return root


class _Page(HTMLParser):
    """Images, the text of every table cell, and the table rows' data-key/data-status."""

    def __init__(self):
        super().__init__()
        self.src, self.rows, self.text = [], {}, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.src.append(attrs["src"])
        if tag == "tr" and "data-key" in attrs:
            self.rows.setdefault(attrs["data-key"], attrs["data-status"])

    def handle_data(self, data):
        self.text.append(data)


def test_report_describes_the_run_and_lists_every_arm_and_image(arm_runs):
    page = main_report("abl", storage=str(arm_runs))
    html_text = page.read_text()
    parser = _Page()
    parser.feed(html_text)
    text = " ".join(" ".join(parser.text).split())
    # the run description comes before any number
    what = text.index("What was run")
    assert what < text.index("Results") and what < text.index("Status")
    for fact in ("dataset synth", "categories bottle, cable", "image size (px) 64", "model profile",
                 "training 10 denoiser steps", "seeds 2 (0, 1)", "anomaly-map backbone resnet50"):
        assert fact in text, fact
    assert "Not the paper's setting" in text and "not comparable" in text
    # every arm, the failed one with its error and the planned one without results
    assert {k: parser.rows[k] for k in ("ldm", "msg", "sgeb3", "sgeb4", "diad_bn_relu", "diad", "diad_authors")} == {
        "ldm": "ok", "msg": "ok", "sgeb3": "failed", "sgeb4": "ok", "diad_bn_relu": "missing", "diad": "ok",
        "diad_authors": "ok"}
    assert "failed: RuntimeError: out of memory at step 3" in text and "sgeb3 (seed 0)" in text
    assert "missing: no result yet" in text
    assert "SD + MSG + SGEB4 (not in the paper)" in text  # paper labels, code names beside
    assert "sgeb4 and diad_authors: identical by construction" in text
    assert "Not finished: 3 of 14 planned trials have no result yet" in text
    # every image exists and the time/memory figure is among them
    assert "cost.png" in parser.src and "categories_image_auroc.png" in parser.src
    for src in parser.src:
        assert (page.parent / src).stat().st_size > 1000
    assert "importance_image_auroc.png" not in parser.src  # one swept key: no importance plot


def test_finished_sweep_has_no_running_note_and_seeds_give_error_bars(arm_runs, tmp_path):
    df = load_results("abl", storage=arm_runs)
    page = write_report(df, tmp_path / "r", expected_trials=11)
    assert "Not finished" not in page.read_text()
    fig = plots.per_category_bars(df, "image_auroc")
    ax = fig.axes[0]
    assert ax.get_ylim() == (0.0, 100.0) and ax.get_ylabel() == "image_auroc (%)"
    assert any(line.get_ydata()[0] == 50.0 for line in ax.lines)  # the chance line
    from matplotlib.container import ErrorbarContainer

    assert any(isinstance(c, ErrorbarContainer) for c in ax.containers)  # two seeds: error bars
    one_seed = df[df["train.seed"] == 0]
    bars = plots.per_category_bars(one_seed, "image_auroc").axes[0].containers
    assert bars and not any(isinstance(c, ErrorbarContainer) for c in bars)


def test_best_within_one_std_is_marked_and_helpers(arm_runs):
    from analysis import paper_view, trials

    df = load_results("abl", storage=arm_runs)
    t = ablation_table(df)
    assert t.index.name == "arm" and t.loc["sgeb3", "status"] == "failed"
    assert any("image_auroc: the best row (diad) is within one std" in n for n in t.attrs["notes"])
    view = paper_view(df)
    assert view.loc["DiAD: SD + MSG + SGEB3 + SFF IN+SiLU", "image_auroc (%)"].endswith("≈")
    one = trials(df)
    assert len(one) == 11 and one["arm"].value_counts()["ldm"] == 2
    assert "model.variant" in one and "data.format" not in one  # constant config left out
    assert "data.format" in trials(df, all_columns=True)

"""One HTML page per sweep: status, tables, every applicable figure; works on a sweep still running.

`index.html` has inline CSS and references its PNGs (written beside it) by relative name; tables are also
written as `.md` and `.tex`. Every file is written atomically, the page last, so a reader never sees a
page pointing at a missing image.
"""

from __future__ import annotations

import datetime as dt
import html
import traceback
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
from matplotlib.figure import Figure

from analysis import plots, tables
from analysis.results import load_results, ok_rows
from analysis.select import varying_columns
from diad.errors import DiadError
from diad.io import atomic_file

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { caption-side: bottom; font-size: 0.85em; color: #555; text-align: left; padding-top: 0.3em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; } pre { background: #f6f6f6; padding: 0.5em; overflow-x: auto; }
.failed { color: #a00; } .note { color: #666; font-size: 0.9em; }
"""

PROVENANCE = ("backbone_weights", "protocol.resolution", "protocol.mask_rule", "protocol.score_rule",
              "protocol.pro_definition", "git_sha", "hardware")


def write_report(df_or_sources: pd.DataFrame | str | Path | Iterable, out_dir: str | Path,
                 predict_dir: str | Path | None = None, storage: str | Path = "runs", title: str | None = None,
                 expected_trials: int | None = None) -> Path:
    """Write `out_dir/index.html` (plus PNG, .md, .tex files) for the results; returns the page's path.

    `expected_trials` (the sweep's planned trial count, when the caller knows it) adds "running or pending".
    """
    df = df_or_sources if isinstance(df_or_sources, pd.DataFrame) else load_results(df_or_sources, storage)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sweeps = sorted(df["sweep_id"].dropna().unique()) if "sweep_id" in df else []
    title = title or f"diad-sweep report: {', '.join(map(str, sweeps)) or 'results'}"
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p class='note'>Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} from {len(df)} "
            "result rows. A sweep still running shows the trials finished so far.</p>",
            _status_section(df, expected_trials), _provenance_section(df), _tables_section(df, out),
            _figures_section(df, out, predict_dir)]
    page = ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
    _write_text(out / "index.html", page)
    _remove_stale(out)
    return out / "index.html"


def _remove_stale(out: Path) -> None:
    """Delete files an earlier report wrote here that this one no longer references (after the page moved)."""
    page = (out / "index.html").read_text(encoding="utf-8")
    for name in _own_files():
        if f"'{name}'" not in page:
            (out / name).unlink(missing_ok=True)


def _own_files() -> list[str]:
    """Every file name a report can write (only these are ever deleted from the output folder)."""
    no_data = pd.DataFrame({"status": pd.Series([], dtype="string")})
    names = [f"{stem}.png" for stem, _, _ in _figure_specs(no_data, predict_dir="")]
    return names + [f"table_{t}.{ext}" for t in ("variants", "backbones") for ext in ("md", "tex")]


def _write_text(path: Path, text: str) -> Path:
    """Atomic write with the usual permissions (a report is for sharing; mkstemp would make it 0600)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _status_section(df: pd.DataFrame, expected_trials: int | None) -> str:
    """Trials per status (ok, failed, and running or pending when the planned count is known); errors listed."""
    trials = df.drop_duplicates("trial_id") if "trial_id" in df else df
    counts = trials["status"].fillna("unknown").value_counts() if "status" in trials else pd.Series(dtype=int)
    items = "".join(f"<li>{html.escape(str(k))}: {int(v)}</li>" for k, v in counts.items())
    if expected_trials is not None:
        items += f"<li>running or pending: {max(0, expected_trials - len(trials))} of {expected_trials}</li>"
    parts = ["<h2>Status</h2>", f"<p>{len(trials)} trials with results.</p><ul>{items}</ul>"]
    failed = trials[trials["status"].eq("failed").fillna(False).astype(bool)] if "status" in trials else trials[:0]
    if len(failed):
        rows = "".join(f"<tr><td>{html.escape(str(r.get('trial_id', '')))}</td>"
                       f"<td class='failed'>{html.escape(str(r.get('error', '')))}</td></tr>"
                       for _, r in failed.iterrows())
        parts.append(f"<table><tr><th>failed trial</th><th>error</th></tr>{rows}</table>")
    return "\n".join(parts)


def _provenance_section(df: pd.DataFrame) -> str:
    """Distinct values of how the numbers were computed (protocol, weights, code, hardware)."""
    rows = []
    for col in PROVENANCE:
        if col in df:
            values = sorted(str(v) for v in df[col].dropna().unique())
            rows.append(f"<tr><td>{col}</td><td>{html.escape('; '.join(values[:5]))}"
                        f"{' ...' if len(values) > 5 else ''}</td></tr>")
    axes = ", ".join(varying_columns(ok_rows(df, category=None)))
    return ("<h2>Protocol and provenance</h2>" + (f"<table>{''.join(rows)}</table>" if rows else "")
            + f"<p>Swept config axes: {html.escape(axes or 'none')}</p>")


def _tables_section(df: pd.DataFrame, out: Path) -> str:
    """The architecture (Table 5) and backbone (Table 6) tables, inline and as .md/.tex files."""
    parts = ["<h2>Tables</h2>"]
    for name, heading, build in (("table_variants", "Architecture variants (paper Table 5)", tables.ablation_table),
                                 ("table_backbones", "Anomaly-map backbones (paper Table 6)", tables.backbone_table)):
        parts.append(f"<h3>{heading}</h3>")
        try:
            table = build(df)
        except DiadError as e:
            parts.append(f"<p class='note'>Not available: {html.escape(str(e))}</p>")
            continue
        if len(table) < 2:
            parts.append(f"<p class='note'>Not applicable: one value of {html.escape(table.index.name)} only "
                         f"({html.escape(', '.join(map(str, table.index)))}).</p>")
            continue
        _write_text(out / f"{name}.md", tables.to_markdown(table))
        _write_text(out / f"{name}.tex", tables.to_latex(table))
        parts.append(tables.to_html(table))
        parts.append(f"<p class='note'>Also as <a href='{name}.md'>markdown</a> and "
                     f"<a href='{name}.tex'>LaTeX</a>.</p>")
    return "\n".join(parts)


def _figure_specs(df: pd.DataFrame, predict_dir) -> list[tuple[str, str, Callable[[], Figure | None]]]:
    """(file stem, caption, builder) for every figure the report tries."""
    ok = ok_rows(df, category=None)
    by = "eval.backbone" if "eval.backbone" in varying_columns(ok) and \
        "model.variant" not in varying_columns(ok) else "model.variant"
    specs = [
        ("metric_vs_forward_steps", "Metric against forward diffusion steps T (paper Figure 6)",
         lambda: plots.metric_vs(df, x="eval.forward_steps")),
        ("metric_vs_ddim_steps", "Metric against DDIM steps", lambda: plots.metric_vs(df, x="eval.ddim_steps")),
        ("categories_image_auroc", f"Image AUROC per category by {by}",
         lambda: plots.per_category_bars(df, "image_auroc", by=by)),
        ("categories_pixel_auroc", f"Pixel AUROC per category by {by}",
         lambda: plots.per_category_bars(df, "pixel_auroc", by=by)),
        ("heatmap_pixel_auroc", "Pixel AUROC: backbone x feature layers",
         lambda: plots.backbone_layer_heatmap(df, "pixel_auroc")),
        ("heatmap_image_auroc", "Image AUROC: backbone x feature layers",
         lambda: plots.backbone_layer_heatmap(df, "image_auroc")),
        ("parallel_coordinates", "Parallel coordinates of the swept axes",
         lambda: plots.parallel_coordinates(df, "image_auroc")),
        ("importance_image_auroc", "Which switch matters for image AUROC",
         lambda: plots.parameter_importance(df, "image_auroc")),
        ("importance_pixel_auroc", "Which switch matters for pixel AUROC",
         lambda: plots.parameter_importance(df, "pixel_auroc")),
    ]
    if predict_dir is not None:
        specs.append(("gallery", "Input, reconstruction, anomaly map and mask (diad predict)",
                      lambda: plots.gallery(predict_dir)))
    return specs


def _figures_section(df: pd.DataFrame, out: Path, predict_dir) -> str:
    """Render each figure to a PNG beside the page; list the ones the data does not support."""
    parts, skipped = ["<h2>Figures</h2>"], []
    for stem, text, build in _figure_specs(df, predict_dir):
        try:
            fig = build()
        except Exception as e:  # one broken figure must not cost the whole report of a partial sweep
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            parts.append(f"<p class='failed'>Figure {stem} failed: {html.escape(last)}</p>")
            continue
        if fig is None:
            skipped.append(text)
            continue
        with atomic_file(out / f"{stem}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        parts.append(f"<figure><img src='{stem}.png' alt='{html.escape(text)}'>"
                     f"<figcaption>{html.escape(text)}</figcaption></figure>")
    if skipped:
        items = "".join(f"<li>{html.escape(s)}</li>" for s in skipped)
        parts.append(f"<p class='note'>Not applicable to these results (the axis does not vary):</p><ul>{items}</ul>")
    return "\n".join(parts)


def main_report(run: str, out: str | None = None, storage: str = "runs", predict_dir: str | None = None,
                expected_trials: int | None = None) -> Path:
    """What `diad-sweep report RUN [--out DIR]` calls: RUN is a sweep id or a results path.

    Default output: <storage>/reports/<RUN's last path component>/ (as the CLI's --out help says).
    """
    if out is None:
        out = Path(storage) / "reports" / Path(run).name
    return write_report(run, out, predict_dir=predict_dir, storage=storage, expected_trials=expected_trials)

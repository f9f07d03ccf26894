"""One HTML page per sweep: status, tables, every applicable figure; works on a sweep still running.

`index.html` has inline CSS and references its PNGs (written beside it) by relative name; tables are also
written as `.md` and `.tex`. Every file is written atomically, the page last, so a reader never sees a
page pointing at a missing image.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import traceback
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
from matplotlib.figure import Figure

from analysis import paper, plots, tables
from analysis.results import load_results, mean_rows, ok_rows
from analysis.runinfo import Plan, describe_run, paper_comparable, read_plan
from analysis.select import drop_redundant, varying_columns
from diad.errors import DiadError
from diad.io import atomic_file

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
td small { color: #666; font-size: 0.85em; } td small code { font-size: 1em; }
td.status { text-align: left; max-width: 26em; } th { text-align: left; }
td:first-child { min-width: 12em; }
caption { caption-side: bottom; font-size: 0.85em; color: #555; text-align: left; padding-top: 0.3em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; } pre { background: #f6f6f6; padding: 0.5em; overflow-x: auto; }
.failed { color: #a00; } .missing { color: #a60; } .note { color: #666; font-size: 0.9em; }
ul.notes { font-size: 0.85em; color: #444; margin-top: -0.5em; }
table.run td:first-child { font-weight: 600; white-space: nowrap; }
table.run td { text-align: left; }
.banner { border-left: 4px solid #c80; background: #fff8e6; padding: 0.5em 0.8em; margin: 1em 0; }
.banner.ok { border-color: #2a2; background: #eefbea; }
.running { border-left: 4px solid #36c; background: #eef3ff; padding: 0.5em 0.8em; }
table.paper { color: #555; background: #fafafa; }
"""

PROVENANCE = ("backbone_weights", "protocol.resolution", "protocol.mask_rule", "protocol.score_rule",
              "protocol.pro_definition", "git_sha", "git_dirty", "versions", "hardware")


def write_report(df_or_sources: pd.DataFrame | str | Path | Iterable, out_dir: str | Path,
                 predict_dir: str | Path | None = None, storage: str | Path = "runs", title: str | None = None,
                 expected_trials: int | None = None, plan: Plan | None = None) -> Path:
    """Write `out_dir/index.html` (plus PNG, .md, .tex files) for the results; returns the page's path.

    `plan` (read from the sweep's saved spec when the results are given by sweep id) names the planned arms,
    so arms without any result are listed as missing; `expected_trials` (the planned trial count) says
    how many trials are still running or pending.
    """
    if plan is None and isinstance(df_or_sources, str):
        plan = read_plan(storage, df_or_sources)
    df = df_or_sources if isinstance(df_or_sources, pd.DataFrame) else load_results(df_or_sources, storage)
    if expected_trials is None and plan is not None:
        expected_trials = plan.n_points
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sweeps = sorted(df["sweep_id"].dropna().unique()) if "sweep_id" in df else []
    title = title or f"diad-sweep report: {', '.join(map(str, sweeps)) or 'results'}"
    planned = plan.arms if plan is not None and plan.arms else None
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p class='note'>Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} from {len(df)} "
            "result rows.</p>",
            _progress_note(df, expected_trials),
            _run_section(df, plan), _status_section(df, planned), _tables_section(df, out, planned),
            _figures_section(df, out, predict_dir), _provenance_section(df)]
    page = ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(b for b in body if b) + "\n</body>\n</html>\n")
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
    return names + [f"table_{t}.{ext}" for t in TABLE_NAMES for ext in ("md", "tex")]


def _write_text(path: Path, text: str) -> Path:
    """Atomic write with the usual permissions (a report is for sharing; mkstemp would make it 0600)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _trials(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trial (its mean row)."""
    rows = mean_rows(df)
    return rows.drop_duplicates("run_key" if "run_key" in rows else "trial_id") if len(rows) else rows


def _progress_note(df: pd.DataFrame, expected_trials: int | None) -> str:
    """Only for an unfinished sweep: how many planned trials have no result yet."""
    if expected_trials is None:
        return ""
    left = max(0, expected_trials - len(_trials(df)))
    if not left:
        return ""
    return (f"<p class='running'>Not finished: {left} of {expected_trials} planned trials have no result yet "
            "(still running, pending, or the sweep was interrupted: <code>diad-sweep resume</code>). "
            "Numbers below are from the finished trials only.</p>")


def _run_section(df: pd.DataFrame, plan: Plan | None) -> str:
    """What was run, before any number: data, size, profile, training, seeds, backbone; paper comparability."""
    facts = describe_run(df)
    if plan is not None and plan.description:
        facts.insert(0, ("sweep", f"{plan.sweep_id}: {plan.description}"))
    trials = _trials(df)
    if "arm" in trials and trials["arm"].notna().any():
        arms = list(dict.fromkeys([*(plan.arms if plan else []), *trials["arm"].dropna().astype(str)]))
        facts.append(("arms compared", ", ".join(arms)))
    ok = ok_rows(df, category=None)
    axes = drop_redundant(ok, varying_columns(ok))  # a variant's preset switches are not separate keys
    facts.append(("swept config keys", ", ".join(axes) or "none"))
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts)
    comparable, why = paper_comparable(df)
    if comparable:
        banner = (f"<p class='banner ok'>This run is in the paper's setting ({html.escape(paper.PAPER_SETTING)}): "
                  "the paper's numbers are shown beside ours.</p>")
    else:
        banner = (f"<p class='banner'><b>Not the paper's setting</b> ({html.escape(why)}). The DiAD paper's "
                  f"numbers are for {html.escape(paper.PAPER_SETTING)}; they are not put beside these results "
                  "and appear only in a separate reference table.</p>")
    return f"<h2>What was run</h2>\n<table class='run'>{rows}</table>\n{banner}"


def _trial_name(row) -> str:
    """A trial by its arm (and seed), falling back to its trial id when the rows name no arm."""
    arm = row.get("arm")
    name = str(arm) if arm is not None and not pd.isna(arm) else str(row.get("trial_id", "?"))
    seed = row.get("train.seed")
    return name + (f" (seed {seed})" if seed is not None and not pd.isna(seed) else "")


def _status_section(df: pd.DataFrame, planned: list[str] | None) -> str:
    """Trials per status; failed trials by arm with their one-line error; planned arms without results."""
    trials = _trials(df)
    counts = trials["status"].fillna("unknown").value_counts() if "status" in trials else pd.Series(dtype=int)
    items = "".join(f"<li>{html.escape(str(k))}: {int(v)}</li>" for k, v in counts.items())
    parts = ["<h2>Status</h2>", f"<p>{len(trials)} trials with results.</p><ul>{items}</ul>"]
    failed = trials[trials["status"].eq("failed").fillna(False).astype(bool)] if "status" in trials else trials[:0]
    lines = [(_trial_name(r), "failed", str(r.get("error") or "")) for _, r in failed.iterrows()]
    seen = set(trials["arm"].dropna().astype(str)) if "arm" in trials else set()
    lines += [(a, "missing", "no result yet") for a in (planned or []) if a not in seen]
    if lines:
        body = "".join(f"<tr><td>{html.escape(n)}</td><td class='{s}' style='text-align:left'>"
                       f"{html.escape(s)}: {html.escape(e)}</td></tr>" for n, s, e in lines)
        parts.append(f"<table><tr><th>trial (arm)</th><th>status</th></tr>{body}</table>")
    return "\n".join(parts)


def _provenance_section(df: pd.DataFrame) -> str:
    """Distinct values of how the numbers were computed (protocol, weights, code, hardware)."""
    rows = []
    for col in PROVENANCE:
        if col in df:
            values = sorted(str(v) for v in df[col].dropna().unique())
            rows.append(f"<tr><td>{col}</td><td style='text-align:left'>{html.escape('; '.join(values[:5]))}"
                        f"{' ...' if len(values) > 5 else ''}</td></tr>")
    return "<h2>Protocol and provenance</h2>" + (f"<table>{''.join(rows)}</table>" if rows else "")


TABLE_NAMES = ("results", "backbones", "cost")


def _row_key(df: pd.DataFrame) -> str:
    """What the tables and bar charts compare: the arms; without arms the variant, or the backbone when
    only the backbone varies."""
    by = tables.default_by(df)
    varying = varying_columns(ok_rows(df))
    if by == "model.variant" and by not in varying and "eval.backbone" in varying:
        return "eval.backbone"
    return by


def _main_table(df: pd.DataFrame, planned: list[str] | None):
    """The results table: by arm (Table 6 numbers when the arms differ only in backbone), else by variant
    or backbone."""
    by = _row_key(df)
    ok = ok_rows(df)
    if by == "eval.backbone":
        return tables.backbone_table(df)
    if by == "arm":
        backbones_only = "eval.backbone" in varying_columns(ok) and "model.variant" not in varying_columns(ok)
        if backbones_only:
            return tables.ablation_table(df, by="arm", metrics=("image_auroc", "pixel_auroc", "pixel_aupro"),
                                         paper_table=paper.TABLE6, order=paper.BACKBONE_ORDER, planned=planned)
        return tables.ablation_table(df, by="arm", planned=planned)
    return tables.ablation_table(df)


def _table_html(table: pd.DataFrame, name: str, out: Path) -> str:
    _write_text(out / f"{name}.md", tables.to_markdown(table))
    _write_text(out / f"{name}.tex", tables.to_latex(table))
    return (tables.to_html(table) + f"<p class='note'>Also as <a href='{name}.md'>markdown</a> and "
            f"<a href='{name}.tex'>LaTeX</a>.</p>")


def _tables_section(df: pd.DataFrame, out: Path, planned: list[str] | None) -> str:
    """Results per arm (or variant), the paper's numbers apart when not comparable, backbones, time and memory."""
    parts = ["<h2>Results</h2>"]
    by = _row_key(df)
    try:
        table = _main_table(df, planned)
    except DiadError as e:
        return "\n".join(parts + [f"<p class='note'>No results table: {html.escape(str(e))}</p>"])
    parts.append(f"<h3>By {html.escape(by)}</h3>")
    parts.append(_table_html(table, "table_results", out))
    ref = tables.paper_reference(table)
    if ref is not None:
        parts.append("<h3>The paper's numbers (for reference, not comparable)</h3>")
        parts.append(tables.paper_reference_html(ref, table.attrs.get("paper_reason", "")))
    if by == "model.variant" and "eval.backbone" in varying_columns(ok_rows(df)):
        with contextlib.suppress(DiadError):
            parts += ["<h3>Anomaly-map backbones (paper Table 6)</h3>",
                      _table_html(tables.backbone_table(df), "table_backbones", out)]
    with contextlib.suppress(DiadError):
        cost = tables.cost_table(df, by=table.index.name, planned=planned if table.index.name == "arm" else None)
        parts += ["<h3>Time and memory</h3>", _table_html(cost, "table_cost", out)]
    return "\n".join(parts)


def _figure_specs(df: pd.DataFrame, predict_dir) -> list[tuple[str, str, Callable[[], Figure | None]]]:
    """(file stem, caption, builder) for every figure the report tries."""
    by = _row_key(df) if len(df) else "model.variant"
    specs = [
        ("metric_vs_forward_steps", "Metric against forward diffusion steps T (paper Figure 6)",
         lambda: plots.metric_vs(df, x="eval.forward_steps")),
        ("metric_vs_ddim_steps", "Metric against DDIM steps", lambda: plots.metric_vs(df, x="eval.ddim_steps")),
        ("categories_image_auroc", f"Image AUROC (%) per category by {by}",
         lambda: plots.per_category_bars(df, "image_auroc", by=by)),
        ("categories_pixel_auroc", f"Pixel AUROC (%) per category by {by}",
         lambda: plots.per_category_bars(df, "pixel_auroc", by=by)),
        ("cost", f"Time and memory per {by}", lambda: plots.cost_bars(df, by=by)),
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
        parts.append("<p class='note'>Not drawn for these results (the axis does not vary, or fewer than two "
                     f"config keys vary):</p><ul>{items}</ul>")
    return "\n".join(parts)


def main_report(run: str, out: str | None = None, storage: str = "runs", predict_dir: str | None = None,
                expected_trials: int | None = None) -> Path:
    """What `diad-sweep report RUN [--out DIR]` calls: RUN is a sweep id or a results path.

    Default output: <storage>/reports/<RUN's last path component>/ (as the CLI's --out help says).
    """
    if out is None:
        out = Path(storage) / "reports" / Path(run).name
    return write_report(run, out, predict_dir=predict_dir, storage=storage, expected_trials=expected_trials)

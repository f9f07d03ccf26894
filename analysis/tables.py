"""Ablation tables like the paper's Tables 5 and 6: mean and std over seeds, best marked, failed rows kept.

A table is a DataFrame indexed by the compared value (an arm, a variant, a backbone) with columns
"label" (the paper's name for the row), "<metric> mean", "<metric> std", "paper <metric>" (the paper's
MVTec-AD number, only when the run is comparable: `analysis.runinfo.paper_comparable`), "n seeds",
"status" ("ok", "failed", "missing", or "ok; 1 of 3 runs failed") and "error" (one line).
`table.attrs` keeps what it was built from and the notes the renderers print under it: rows identical
(by construction or not), a best row whose margin is within one std of the next, a single seed.
`to_markdown`, `to_latex` and `to_html` render it with the best value per column in bold.
"""

from __future__ import annotations

import html
import math

import pandas as pd

from analysis import paper
from analysis.results import mean_rows, ok_rows
from analysis.runinfo import paper_comparable
from analysis.select import as_key, describe_fixed, hold_fixed, seed_columns
from diad.errors import DiadError
from diad.schema import METRICS

LOWER_IS_BETTER = {"train_wall_s", "eval_wall_s", "peak_mem_mb"}
PERCENT_METRICS = set(METRICS)  # every metric is a fraction in [0, 1], shown in percent
UNITS = {"train_wall_s": "s", "eval_wall_s": "s", "peak_mem_mb": "MB"}
CLOSE = "≈"  # marks a best value within one std of the runner-up


def default_by(df: pd.DataFrame) -> str:
    """The row key of the main table: the sweep's arms when the rows name them, else the variant."""
    return "arm" if "arm" in df and df["arm"].notna().any() else "model.variant"


def ablation_table(df: pd.DataFrame, by: str | None = None,
                   metrics: tuple[str, ...] = ("image_auroc", "pixel_auroc"), category: str = "mean",
                   paper_table: dict | None = paper.TABLE5, order: tuple[str, ...] = paper.VARIANT_ORDER,
                   with_paper: bool | None = None, planned: list[str] | None = None) -> pd.DataFrame:
    """One row per value of `by` (default: arm, else model.variant), other axes held fixed.

    Failed rows are kept (status "failed", their error); `planned` keys with no rows at all are "missing".
    `with_paper`: None = the paper's columns only when the run is comparable; True/False forces it.
    """
    by = by or default_by(df)
    if by not in df:
        raise DiadError(f"results have no column {by!r}: expected one of the config columns or 'arm'")
    missing = [m for m in metrics if m not in df]
    if missing:
        raise DiadError(f"results have no metric column(s) {missing}: expected result columns")
    rows, fixed = hold_fixed(ok_rows(df, category), (by,))
    rows = rows[rows[by].notna()]
    failed = _failed_rows(df, by, fixed)
    if rows.empty and failed.empty and not planned:
        raise DiadError(f"no {category!r} rows with a value of {by!r} to tabulate")
    keys = as_key(rows[by])
    fkeys = as_key(failed[by])
    present = list(keys.unique()) + [k for k in fkeys.unique() if k not in set(keys)]
    present += [k for k in (planned or []) if k not in present]
    index = paper.in_order(present, tuple(planned or ()) + order)
    out = pd.DataFrame(index=pd.Index(index, name=by))
    out["label"] = [paper.label(k) for k in index]
    comparable, why = paper_comparable(df)
    include = comparable if with_paper is None else with_paper
    for m in metrics:
        grouped = rows[m].groupby(keys)
        out[f"{m} mean"] = grouped.mean().reindex(out.index).astype("float64")
        out[f"{m} std"] = grouped.std(ddof=1).reindex(out.index).astype("float64")
        if include and paper_table is not None and m in paper.PAPER_METRIC:
            numbers = pd.Series([paper.paper_value(paper_table, k, m) for k in out.index], index=out.index)
            if numbers.notna().any():
                out[f"paper {m}"] = numbers.astype("float64")
    seeds = seed_columns(rows)
    seed_keys = [as_key(rows[c]) for c in seeds]
    ids = seed_keys[0].str.cat(seed_keys[1:], sep="|") if seeds else pd.Series(range(len(rows)), index=rows.index)
    out["n seeds"] = ids.groupby(keys).nunique().reindex(out.index).fillna(0).astype(int)
    n_failed = fkeys.value_counts().reindex(out.index).fillna(0).astype(int)
    errors = failed.assign(_k=fkeys).groupby("_k")["error"].first() if len(failed) else pd.Series(dtype=object)
    out["status"] = [_status(out.loc[k, "n seeds"], n_failed[k]) for k in out.index]
    out["error"] = [str(errors[k]) if k in errors.index and pd.notna(errors[k]) else "" for k in out.index]
    out.attrs.update(by=by, metrics=list(metrics), category=category, fixed=fixed,
                     title=f"{', '.join(metrics)} by {by} (category {category})",
                     paper_included=bool(include and any(c.startswith("paper ") for c in out.columns)),
                     paper_table=paper_table, paper_comparable=comparable, paper_reason=why)
    out.attrs["notes"] = _notes(out, metrics)
    return out


def _failed_rows(df: pd.DataFrame, by: str, fixed: dict[str, str]) -> pd.DataFrame:
    """Mean rows of failed trials that match the held values (where the failed row records them)."""
    if "status" not in df:
        return df[:0]
    failed = mean_rows(df)
    failed = failed[failed["status"].eq("failed").fillna(False).astype(bool) & failed[by].notna()]
    for col, value in fixed.items():
        if col in failed:
            key = as_key(failed[col])
            failed = failed[(key == value) | failed[col].isna()]
    return failed


def _status(n_ok: int, n_failed: int) -> str:
    if n_ok and n_failed:
        return f"ok; {n_failed} of {n_ok + n_failed} runs failed"
    if n_failed:
        return "failed"
    return "ok" if n_ok else "missing"


def _notes(table: pd.DataFrame, metrics) -> list[str]:
    """Identical rows, best within one std, one seed only: what a reader must know to read the bold."""
    notes = []
    ok = table[table["n seeds"] > 0]
    means = [f"{m} mean" for m in metrics if m in PERCENT_METRICS]  # equal times or memory are no news
    keys = list(ok.index)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            va, vb = ok.loc[a, means].to_numpy(float), ok.loc[b, means].to_numpy(float)
            if len(va) and not pd.isna(va).all() and ((va == vb) | (pd.isna(va) & pd.isna(vb))).all():
                why = paper.SAME_BY_CONSTRUCTION.get(frozenset({a, b}),
                                                     "identical numbers, not expected by construction: worth a check")
                notes.append(f"{a} and {b}: {why}.")
    if len(ok) >= 2 and (ok["n seeds"] < 2).all():
        notes.append("One seed per row: no spread is known, so differences between rows are untested.")
    for m in metrics:
        col = ok[f"{m} mean"].dropna()
        if len(col) < 2:
            continue
        if col.round(9).nunique() == 1:
            notes.append(f"{m}: every row has the same value; no difference to read.")
            continue
        ranked = col.sort_values(ascending=m in LOWER_IS_BETTER)
        best, second = ranked.index[0], ranked.index[1]
        spread = ok.loc[[best, second], f"{m} std"].max()
        if pd.notna(spread) and abs(ranked.iloc[0] - ranked.iloc[1]) <= spread:
            notes.append(f"{m}: the best row ({best}) is within one std of {second} "
                         f"(marked {CLOSE}): not a clear difference.")
    return notes


def backbone_table(df: pd.DataFrame, metrics: tuple[str, ...] = ("image_auroc", "pixel_auroc", "pixel_aupro"),
                   category: str = "mean", with_paper: bool | None = None) -> pd.DataFrame:
    """Table 6: metrics by anomaly-map backbone (`eval.backbone`), paper numbers alongside when comparable."""
    return ablation_table(df, by="eval.backbone", metrics=metrics, category=category,
                          paper_table=paper.TABLE6, order=paper.BACKBONE_ORDER, with_paper=with_paper)


def cost_table(df: pd.DataFrame, by: str | None = None, planned: list[str] | None = None) -> pd.DataFrame:
    """Time and memory per row key: training and evaluation wall seconds, peak memory (mean over seeds)."""
    return ablation_table(df, by=by, metrics=("train_wall_s", "eval_wall_s", "peak_mem_mb"), paper_table=None,
                          with_paper=False, planned=planned)


def paper_reference(table: pd.DataFrame) -> pd.DataFrame | None:
    """The paper's numbers for the rows of `table` (when they were left out as not comparable), or None."""
    source = table.attrs.get("paper_table")
    if source is None or table.attrs.get("paper_included"):
        return None
    out = pd.DataFrame(index=table.index)
    out["label"] = table["label"]
    for m in table.attrs.get("metrics", []):
        if m in paper.PAPER_METRIC:
            out[m] = [paper.paper_value(source, k, m) for k in table.index]
    out = out.dropna(how="all", subset=[c for c in out.columns if c != "label"])
    return out if len(out.columns) > 1 and len(out) else None


def paper_view(df: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """The table as the paper shows it: rows named as the paper names them, percent with one decimal,
    "mean ± std" text cells (std only from several seeds), the paper's numbers only when comparable."""
    table = ablation_table(df, **kwargs)
    header, body, _ = _cells(table, 1, markup=False)
    return pd.DataFrame([[c[0] for c in row[1:]] for row in body], columns=header[1:],
                        index=pd.Index([row[0][0] for row in body], name="row"))


# ---- rendering -------------------------------------------------------------------------------------


def _scale(metric: str) -> float:
    return 100.0 if metric in PERCENT_METRICS else 1.0


def _unit(metric: str) -> str:
    return " (%)" if metric in PERCENT_METRICS else f" ({UNITS[metric]})" if metric in UNITS else ""


def _cells(table: pd.DataFrame, digits: int, markup: bool = True):
    """Header, body rows [(text, is_best)] and per-row (key, status, error), shared by every renderer.

    The first cell of a row is the paper's label; the renderers add the code name in small text.
    """
    metrics = table.attrs.get("metrics") or [c[:-5] for c in table.columns if c.endswith(" mean")]
    header = [table.index.name or ""]
    columns: list[tuple[str, str]] = []
    for m in metrics:
        header.append(f"{m}{_unit(m)}")
        columns.append(("ours", m))
        if f"paper {m}" in table:
            name = "PRO" if paper.PAPER_METRIC[m] == "pro" else m
            header.append(f"paper {name}{_unit(m)}, MVTec-AD")
            columns.append(("paper", m))
    header += ["n seeds", "status"]
    best = {col: _best(table, *col, digits) for col in columns}
    close = {n.split(":")[0] for n in table.attrs.get("notes", []) if CLOSE in n}
    body, meta = [], []
    for key, row in table.iterrows():
        cells = [(str(row.get("label", key)), False)]
        for kind, m in columns:
            scale = _scale(m)
            if kind == "ours":
                mean, std = row[f"{m} mean"], row[f"{m} std"]
                text = _fmt(mean, scale, digits) + ("" if _nan(std) else f" ± {_fmt(std, scale, digits)}")
                value = mean
            else:
                value = row[f"paper {m}"]
                text = _fmt(value, scale, digits)
            is_best = not _nan(value) and round(value * scale, digits) == best[(kind, m)]
            if is_best and kind == "ours" and m in close:
                text += f" {CLOSE}"
            cells.append((text, is_best))
        status = str(row.get("status", "ok"))
        cells.append((str(int(row["n seeds"])), False))
        error = str(row.get("error", "") or "")
        cells.append((status + (f": {error}" if error and not markup else ""), False))
        body.append(cells)
        meta.append((str(key), status, error))
    return header, body, meta


def _best(table: pd.DataFrame, kind: str, metric: str, digits: int) -> float:
    """The best displayed (rounded) value of a column; ties are all marked; nothing with < 2 values."""
    col = table[f"{metric} mean" if kind == "ours" else f"paper {metric}"].dropna()
    if len(col) < 2 or (col * _scale(metric)).round(digits).nunique() == 1:  # nothing to compare, or all tie
        return math.nan
    value = col.min() if metric in LOWER_IS_BETTER else col.max()
    return round(float(value) * _scale(metric), digits)


def _nan(x) -> bool:
    return x is None or bool(pd.isna(x))


def _fmt(x, scale: float, digits: int) -> str:
    return "–" if _nan(x) else f"{float(x) * scale:.{digits}f}"


def caption(table: pd.DataFrame) -> str:
    """One line saying what the table holds, what was held fixed and where the paper's numbers are."""
    text = table.attrs.get("title", "")
    fixed = describe_fixed(table.attrs.get("fixed", {}))
    text += f"; held fixed: {fixed}" if fixed else ""
    text += ". Mean ± std over seeds (std only with several seeds). Bold: best per column"
    if table.attrs.get("paper_included"):
        text += f". 'paper' columns: the DiAD paper's numbers ({paper.PAPER_SETTING})"
        if any(c.startswith("paper pixel_aupro") for c in table.columns):
            text += "; the paper's PRO uses the authors' definition (FPR rescaled), like pixel_pro_legacy"
    elif table.attrs.get("paper_reason"):
        text += (f". The paper's MVTec-AD numbers are not shown beside these rows: not comparable "
                 f"({table.attrs['paper_reason']})")
    return text + "."


def notes(table: pd.DataFrame) -> list[str]:
    return list(table.attrs.get("notes", []))


def to_markdown(table: pd.DataFrame, digits: int = 1) -> str:
    """A GitHub-markdown table, best value per column in **bold**, code names in backticks, notes below."""
    header, body, meta = _cells(table, digits)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row, (key, status, error) in zip(body, meta):
        cells = [f"**{t}**" if b else t for t, b in row]
        cells[0] = f"{row[0][0]} `{key}`" if row[0][0] != key else f"`{key}`"
        if error:
            cells[-1] = f"{status}: {error}"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    extra = "".join(f"\n- {n}" for n in notes(table))
    return "\n".join(lines) + f"\n\n*{caption(table)}*\n" + (extra + "\n" if extra else "")


def _tex(text: str) -> str:
    """Escape LaTeX specials; ± and the dash of a missing value become math/ASCII."""
    for char, repl in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                       ("±", r"$\pm$"), ("–", "--"), (CLOSE, r"$\approx$")):
        text = text.replace(char, repl)
    return text


def to_latex(table: pd.DataFrame, digits: int = 1) -> str:
    """A booktabs LaTeX table, best value per column in \\textbf{}, code names small, caption and notes."""
    header, body, meta = _cells(table, digits)
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (len(header) - 2) + "l}",
             r"\toprule", " & ".join(_tex(h) for h in header) + r" \\", r"\midrule"]
    for row, (key, status, error) in zip(body, meta):
        cells = [rf"\textbf{{{_tex(t)}}}" if b else _tex(t) for t, b in row]
        if row[0][0] != key:
            cells[0] += rf" {{\small\texttt{{{_tex(key)}}}}}"
        if error:
            cells[-1] = _tex(f"{status}: {error}")
        lines.append(" & ".join(cells) + r" \\")
    text = caption(table) + "".join(f" {n}" for n in notes(table))
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{_tex(text)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_html(table: pd.DataFrame, digits: int = 1) -> str:
    """An HTML <table>: paper label with the code name in <small>, best in <b>, failed rows marked."""
    header, body, meta = _cells(table, digits)
    esc = html.escape
    rows = ["<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for row, (key, status, error) in zip(body, meta):
        label = row[0][0]
        first = f"<code>{esc(key)}</code>" if label == key else f"{esc(label)}<br><small><code>{esc(key)}</code></small>"
        kind = "missing" if status == "missing" else "" if status == "ok" else "failed"
        cells = [f"<td>{first}</td>"]
        cells += [f"<td>{'<b>' + esc(t) + '</b>' if b else esc(t)}</td>" for t, b in row[1:-1]]
        text = status + (f": {error}" if error else "")
        cells.append(f"<td class='status {kind}'>{esc(text)}</td>")
        rows.append(f"<tr data-key='{esc(key)}' data-status='{esc(status)}'>" + "".join(cells) + "</tr>")
    note_html = "".join(f"<li>{esc(n)}</li>" for n in notes(table))
    return (f"<table>\n<caption>{esc(caption(table))}</caption>\n" + "\n".join(rows) + "\n</table>\n"
            + (f"<ul class='notes'>{note_html}</ul>\n" if note_html else ""))


def paper_reference_html(ref: pd.DataFrame, reason: str) -> str:
    """The paper's numbers as their own small table, headed as not comparable with this run."""
    esc = html.escape
    metrics = [c for c in ref.columns if c != "label"]
    head = "<tr><th>paper row</th>" + "".join(f"<th>{esc(m)} (%)</th>" for m in metrics) + "</tr>"
    body = ""
    for key, row in ref.iterrows():
        body += (f"<tr><td>{esc(str(row['label']))}<br><small><code>{esc(str(key))}</code></small></td>"
                 + "".join(f"<td>{_fmt(row[m], 100.0, 1)}</td>" for m in metrics) + "</tr>")
    cap = (f"The DiAD paper's own numbers ({paper.PAPER_SETTING}), for orientation only: NOT comparable "
           f"with this run ({reason}).")
    return f"<table class='paper'>\n<caption>{esc(cap)}</caption>\n{head}\n{body}\n</table>\n"

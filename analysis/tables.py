"""Ablation tables like the paper's Tables 5 and 6: mean and std over seeds, best marked, paper alongside.

A table is a DataFrame indexed by the compared value with columns "<metric> mean", "<metric> std",
"paper <metric>" (the paper's number, where it has one) and "n seeds"; `table.attrs` keeps what it
was built from. `to_markdown`, `to_latex` and `to_html` render it with the best value per column in bold.
"""

from __future__ import annotations

import html
import math

import pandas as pd

from analysis import paper
from analysis.results import ok_rows
from analysis.select import as_key, describe_fixed, hold_fixed, seed_columns
from diad.errors import DiadError
from diad.schema import METRICS

LOWER_IS_BETTER = {"train_wall_s", "eval_wall_s", "peak_mem_mb"}
PERCENT_METRICS = set(METRICS)  # every metric is a fraction in [0, 1], shown in percent


def ablation_table(df: pd.DataFrame, by: str = "model.variant",
                   metrics: tuple[str, ...] = ("image_auroc", "pixel_auroc"), category: str = "mean",
                   paper_table: dict | None = paper.TABLE5,
                   order: tuple[str, ...] = paper.VARIANT_ORDER) -> pd.DataFrame:
    """One row per value of `by`: mean, std over seeds and n seeds of each metric, other axes held fixed."""
    if by not in df:
        raise DiadError(f"results have no column {by!r}: expected one of the config columns")
    missing = [m for m in metrics if m not in df]
    if missing:
        raise DiadError(f"results have no metric column(s) {missing}: expected result columns")
    rows, fixed = hold_fixed(ok_rows(df, category), (by,))
    rows = rows[rows[by].notna()]
    if rows.empty:
        raise DiadError(f"no successful {category!r} rows with a value of {by!r} to tabulate")
    keys = as_key(rows[by])
    seeds = seed_columns(rows)
    out = pd.DataFrame(index=pd.Index(paper.in_order(keys.unique(), order), name=by))
    for m in metrics:
        grouped = rows[m].groupby(keys)
        out[f"{m} mean"] = grouped.mean()
        out[f"{m} std"] = grouped.std(ddof=1)
        if paper_table is not None and m in paper.PAPER_METRIC:
            numbers = pd.Series([paper.paper_value(paper_table, k, m) for k in out.index], index=out.index)
            if numbers.notna().any():  # the paper reports this metric for at least one of our rows
                out[f"paper {m}"] = numbers.astype("float64")
    seed_keys = [as_key(rows[c]) for c in seeds]  # one id per seed combination
    ids = seed_keys[0].str.cat(seed_keys[1:], sep="|") if seeds else pd.Series(range(len(rows)), index=rows.index)
    out["n seeds"] = ids.groupby(keys).nunique().reindex(out.index).fillna(0).astype(int)
    out.attrs.update(by=by, metrics=list(metrics), category=category, fixed=fixed,
                     title=f"{', '.join(metrics)} by {by} (category {category})")
    return out


def backbone_table(df: pd.DataFrame, metrics: tuple[str, ...] = ("image_auroc", "pixel_auroc", "pixel_aupro"),
                   category: str = "mean") -> pd.DataFrame:
    """Table 6: metrics by anomaly-map backbone (`eval.backbone`), paper numbers alongside."""
    return ablation_table(df, by="eval.backbone", metrics=metrics, category=category,
                          paper_table=paper.TABLE6, order=paper.BACKBONE_ORDER)


# ---- rendering -------------------------------------------------------------------------------------


def _cells(table: pd.DataFrame, digits: int) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and body cells (text, is_best) shared by the markdown, LaTeX and HTML renderers."""
    metrics = table.attrs.get("metrics") or [c[:-5] for c in table.columns if c.endswith(" mean")]
    header = [table.index.name or ""]
    columns: list[tuple[str, str]] = []  # (kind, metric)
    for m in metrics:
        unit = " (%)" if m in PERCENT_METRICS else ""
        header.append(f"{m}{unit}")
        columns.append(("ours", m))
        if f"paper {m}" in table:
            header.append(f"paper {'PRO' if paper.PAPER_METRIC[m] == 'pro' else m}{unit}")
            columns.append(("paper", m))
    header.append("n seeds")
    best = {col: _best(table, *col, digits) for col in columns}
    body = []
    for key, row in table.iterrows():
        cells = [(str(key), False)]
        for kind, m in columns:
            scale = 100.0 if m in PERCENT_METRICS else 1.0
            if kind == "ours":
                mean, std = row[f"{m} mean"], row[f"{m} std"]
                text = _fmt(mean, scale, digits) + ("" if _nan(std) else f" ± {_fmt(std, scale, digits)}")
                value = mean
            else:
                value = row[f"paper {m}"]
                text = _fmt(value, scale, digits)
            is_best = not _nan(value) and round(value * scale, digits) == best[(kind, m)]
            cells.append((text, is_best))
        cells.append((str(int(row["n seeds"])), False))
        body.append(cells)
    return header, body


def _best(table: pd.DataFrame, kind: str, metric: str, digits: int) -> float:
    """The best displayed (rounded) value of a column; ties are all marked."""
    col = table[f"{metric} mean" if kind == "ours" else f"paper {metric}"].dropna()
    if len(col) < 2:  # nothing to compare: mark nothing
        return math.nan
    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    value = col.min() if metric in LOWER_IS_BETTER else col.max()
    return round(float(value) * scale, digits)


def _nan(x) -> bool:
    return x is None or bool(pd.isna(x))


def _fmt(x, scale: float, digits: int) -> str:
    return "–" if _nan(x) else f"{float(x) * scale:.{digits}f}"


def caption(table: pd.DataFrame) -> str:
    """One line saying what the table holds and which other axes were held fixed."""
    text = table.attrs.get("title", "")
    fixed = describe_fixed(table.attrs.get("fixed", {}))
    text += f"; held fixed: {fixed}" if fixed else ""
    text += ". Bold: best per column. 'paper' columns: the DiAD paper's numbers, for orientation"
    if any(c.startswith("paper pixel_aupro") for c in table.columns):
        text += "; the paper's PRO uses the authors' definition (FPR rescaled), like pixel_pro_legacy"
    return text + "."


def to_markdown(table: pd.DataFrame, digits: int = 1) -> str:
    """A GitHub-markdown table, best value per column in **bold**, caption below."""
    header, body = _cells(table, digits)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row in body:
        lines.append("| " + " | ".join(f"**{t}**" if b else t for t, b in row) + " |")
    return "\n".join(lines) + f"\n\n*{caption(table)}*\n"


def _tex(text: str) -> str:
    """Escape LaTeX specials; ± and the dash of a missing value become math/ASCII."""
    for char, repl in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                       ("±", r"$\pm$"), ("–", "--")):
        text = text.replace(char, repl)
    return text


def to_latex(table: pd.DataFrame, digits: int = 1) -> str:
    """A booktabs LaTeX table, best value per column in \\textbf{}, caption included."""
    header, body = _cells(table, digits)
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
             r"\toprule", " & ".join(_tex(h) for h in header) + r" \\", r"\midrule"]
    for row in body:
        lines.append(" & ".join(rf"\textbf{{{_tex(t)}}}" if b else _tex(t) for t, b in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{_tex(caption(table))}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_html(table: pd.DataFrame, digits: int = 1) -> str:
    """An HTML <table> (for the report), best value per column in <b>, caption included."""
    header, body = _cells(table, digits)
    esc = html.escape
    rows = ["<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for row in body:
        rows.append("<tr>" + "".join(f"<td>{'<b>' + esc(t) + '</b>' if b else esc(t)}</td>" for t, b in row)
                    + "</tr>")
    return (f"<table>\n<caption>{esc(caption(table))}</caption>\n" + "\n".join(rows) + "\n</table>\n")


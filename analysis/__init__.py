"""Sweep analysis: load Parquet results, tabulate, plot, report. Imports pandas and matplotlib, never torch or Ray.

    from analysis import load_results, ablation_table, to_markdown
    df = load_results("my-sweep")                 # or a path, or a list of either
    print(to_markdown(ablation_table(df)))
"""

from analysis.results import load_results
from analysis.tables import ablation_table, backbone_table, to_html, to_latex, to_markdown

__all__ = ["load_results", "ablation_table", "backbone_table", "to_markdown", "to_latex", "to_html"]

"""Sweep analysis: load Parquet results, tabulate, plot, report. Imports pandas and matplotlib, never torch or Ray.

    from analysis import load_results, ablation_table, to_markdown
    df = load_results("my-sweep")                 # or a path, or a list of either
    print(to_markdown(ablation_table(df)))
"""

from analysis.results import category_rows, load_results, mean_rows, trials
from analysis.tables import ablation_table, backbone_table, cost_table, paper_view, to_html, to_latex, to_markdown

__all__ = ["load_results", "trials", "mean_rows", "category_rows", "ablation_table", "backbone_table",
           "cost_table", "paper_view", "to_markdown", "to_latex", "to_html"]

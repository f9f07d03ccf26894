"""Which switch matters: importance of each varying config axis for a metric.

The evaluator is optuna's fANOVA (`FanovaImportanceEvaluator`, fraction of variance explained), run
offline on a study built from the result rows. If that fails, a named fallback is used: scikit-learn
permutation importance of a random forest. The evaluator's name is returned with the numbers and shown
in the figure title.
"""

from __future__ import annotations

import textwrap
import warnings

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.results import ok_rows
from analysis.select import as_key, drop_redundant, varying_columns

FANOVA = "optuna FanovaImportanceEvaluator (fANOVA)"
FALLBACK = "random-forest permutation importance, scikit-learn (fallback)"


def importances(df: pd.DataFrame, metric: str = "image_auroc", category: str = "mean",
                seed: int = 0) -> tuple[pd.Series, str] | None:
    """(importance per config axis, sorted descending; evaluator name), or None with < 3 rows or < 2 axes."""
    rows = ok_rows(df, category)
    if metric not in rows:
        return None
    rows = rows[rows[metric].notna()]
    cols = drop_redundant(rows, varying_columns(rows))  # a variant's preset switches would split its share
    if len(cols) < 2 or len(rows) < 3:  # one key: its share is 1.0 by definition, nothing to rank
        return None
    params = _params(rows, cols)
    try:
        values, name = _fanova(params, rows[metric].to_numpy(dtype=float), seed), FANOVA
    except Exception as e:  # optuna missing or failing: say so in the evaluator's name
        values = _forest(params, rows[metric].to_numpy(dtype=float), seed)
        name = f"{FALLBACK}; fANOVA failed: {type(e).__name__}"
    return pd.Series(values).reindex(cols).fillna(0.0).sort_values(ascending=False), name


def _params(rows: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Config axes as float (numeric, no missing) or text (everything else)."""
    out = {}
    for c in cols:
        numeric = pd.to_numeric(rows[c], errors="coerce")
        is_bool = pd.api.types.is_bool_dtype(rows[c])
        out[c] = numeric.astype(float) if numeric.notna().all() and not is_bool else as_key(rows[c])
    return pd.DataFrame(out, index=rows.index)


def _fanova(params: pd.DataFrame, values: np.ndarray, seed: int) -> dict[str, float]:
    """optuna fANOVA on an in-memory study whose trials are the result rows."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    dists = {}
    for c in params:
        col = params[c]
        if pd.api.types.is_float_dtype(col):
            dists[c] = FloatDistribution(float(col.min()), float(col.max()))
        else:
            dists[c] = CategoricalDistribution(sorted(col.unique()))
    trials = [optuna.trial.create_trial(params={c: (float(v) if isinstance(v, (float, np.floating)) else str(v))
                                                for c, v in row.items()},
                                        distributions=dists, value=float(value))
              for (_, row), value in zip(params.iterrows(), values)]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "study created" chatter, restored below
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = optuna.create_study(direction="maximize")
            study.add_trials(trials)
            result = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed), normalize=True)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {k: float(v) for k, v in result.items()}


def _forest(params: pd.DataFrame, values: np.ndarray, seed: int) -> dict[str, float]:
    """Permutation importance (mean drop in R^2) of a random forest on ordinal-coded axes."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    x = np.stack([params[c].to_numpy(dtype=float) if pd.api.types.is_float_dtype(params[c])
                  else pd.Categorical(params[c]).codes.astype(float) for c in params], axis=1)
    forest = RandomForestRegressor(n_estimators=64, random_state=seed).fit(x, values)
    result = permutation_importance(forest, x, values, n_repeats=8, random_state=seed)
    return {c: float(max(0.0, v)) for c, v in zip(params.columns, result.importances_mean)}


def parameter_importance(df: pd.DataFrame, metric: str = "image_auroc", category: str = "mean",
                         seed: int = 0) -> Figure | None:
    """Horizontal bars of each config axis's importance for `metric`; the evaluator is named in the title."""
    found = importances(df, metric, category, seed)
    if found is None:
        return None
    values, name = found
    fig = Figure(figsize=(7.0, 1.5 + 0.4 * len(values)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(range(len(values)), values.to_numpy(), color="tab:blue")
    ax.set_yticks(range(len(values)), values.index)
    ax.invert_yaxis()
    ax.set_xlabel("importance (fraction of variance)" if name == FANOVA else "importance (mean drop in R²)")
    ax.set_ylabel("config axis")
    ax.set_title(f"Importance for {metric} ({category})\nevaluator: {textwrap.fill(name, 60)}", fontsize="medium")
    return fig

"""Ablation sweeps on Ray Tune: spec YAML -> trials (train once, evaluate many) -> Parquet results.

The only package that imports Ray; import `diad.sweep.runner` for the API, `diad.sweep.cli` for the CLI.
"""

"""`diad-sweep report`: a plugin command of the sweep CLI (entry point `diad_sweep.commands`, pyproject.toml)."""

from __future__ import annotations

import contextlib
import sys

import click

from diad.errors import DiadError


@click.command()
@click.argument("run")
@click.option("--out", default=None, help="Report folder (default <storage>/reports/RUN).")
@click.option("--predict", "predict_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Folder of `diad predict` panels to show as a gallery.")
@click.option("--storage", default=None, metavar="PATH|URI",
              help="Sweep storage root (default $DIAD_SWEEP_STORAGE or ./runs).")
def report(run: str, out: str | None, predict_dir: str | None, storage: str | None) -> None:
    """Tables, plots and an HTML report for sweep RUN (a sweep id or a results path); works while RUN runs."""
    from analysis.report import main_report
    from diad.sweep.layout import read_meta, storage_root

    root = storage_root(storage)
    expected = None
    with contextlib.suppress(DiadError):  # RUN may be a results path rather than a sweep id: no trial count then
        expected = read_meta(root, run).get("n_points")
    try:
        click.echo(str(main_report(run, out, storage=root, predict_dir=predict_dir, expected_trials=expected)))
    except DiadError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)

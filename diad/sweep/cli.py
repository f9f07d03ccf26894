"""`diad-sweep`: launch, resume, status and ls for Ray Tune sweeps, plus the commands of installed plugins.

Plugins register click commands under the entry-point group `diad_sweep.commands` (pyproject.toml); the
`report` command is one, from the `analysis` package. They load only when named, so the sweep layer never
imports analysis (layers point one way) and `diad-sweep --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from importlib.metadata import entry_points

import click

from diad.errors import DiadError

_storage = click.option("--storage", default=None, metavar="PATH|URI",
                        help="Sweep storage root (default $DIAD_SWEEP_STORAGE or ./runs); s3://, gs:// work too.")
_address = click.option("--address", default=None,
                        help="Join a running Ray cluster (e.g. auto, or ray://head:10001); default: start a local one.")
_dash_host = click.option("--dashboard-host", default="127.0.0.1", show_default=True,
                          help="Interface the local dashboard binds to (0.0.0.0 exposes it; token auth stays on).")
_no_dash = click.option("--no-dashboard", is_flag=True, help="Start the local Ray without its dashboard.")
_num_cpus = click.option("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all).")


def _run(fn, *args, **kwargs):
    """Call into the library; a DiadError becomes one `error:` line and exit status 2."""
    from diad.integrity import os_error_line

    try:
        return fn(*args, **kwargs)
    except DiadError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except OSError as e:  # disk full, read-only or not-a-directory storage: one line, not a traceback
        click.echo(f"error: {os_error_line(e)}", err=True)
        sys.exit(2)


def _print_summary(summary: dict) -> None:
    """The summary as JSON; then one line per failed trial, and exit 1 when any failed."""
    from diad.sweep.live import next_steps

    summary.pop("errors", [])
    failed = summary.pop("failed_trials", [])
    click.echo(json.dumps(summary, indent=1, default=str))
    if "sweep_id" in summary:  # a launch or resume summary names its sweep; then say what to run next
        for line in next_steps(summary["sweep_id"], summary["storage"], summary.get("sweeps")):
            click.echo(line)
    for f in failed:
        click.echo(f"trial failed: {f['trial']}: {f['error']}", err=True)
    if failed:
        click.echo(f"error: {len(failed)} of {summary.get('ran', '?')} trials failed (rows with status failed)",
                   err=True)
        sys.exit(1)


PLUGIN_GROUP = "diad_sweep.commands"


class PluginGroup(click.Group):
    """A click group whose extra commands come from entry points, loaded on first use."""

    def _plugins(self) -> dict:
        return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in self._plugins():
            command = self._plugins()[name].load()
        return command


@click.group(cls=PluginGroup)
def main() -> None:
    """Ablation sweeps of DiAD on Ray Tune; results land in <storage>/results as Parquet."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@main.command()
@click.argument("specs_and_overrides", nargs=-1, required=True, metavar="SPEC... [KEY=VALUE...]")
@_storage
@click.option("--cache-dir", default=None, help="Checkpoint/reconstruction cache: a shared POSIX path, or a URI (default with a URI "
              "--storage: <storage>/cache, synced to node-local copies).")
@_address
@_dash_host
@_no_dash
@_num_cpus
@click.option("-v", "--verbose", count=True, help="More of Ray Tune's own output (-v tables, -vv everything).")
def launch(specs_and_overrides, storage, cache_dir, address, dashboard_host, no_dashboard, num_cpus, verbose):
    """Run the sweep in each SPEC (YAML); key=value words are overrides of every spec: train.steps=3,
    preset=gpu, resources.gpu=1. Several specs run in one Ray Tune experiment named "a+b" (one training per
    distinct training config across all of them); `diad-sweep resume` takes that name or any member's id.

    Runs that already have an "ok" result file are skipped, so relaunching an unchanged sweep is cheap.
    """
    from diad.sweep import group, runner

    specs, overrides = _run(group.split_args, list(specs_and_overrides))
    summary = _run(runner.launch, specs, overrides, storage=storage, cache_dir=cache_dir, address=address,
                   dashboard=not no_dashboard, dashboard_host=dashboard_host, num_cpus=num_cpus, verbose=verbose)
    _print_summary(summary)


@main.command()
@click.argument("run")
@_storage
@_address
@_dash_host
@_no_dash
@_num_cpus
def resume(run, storage, address, dashboard_host, no_dashboard, num_cpus):
    """Continue the interrupted sweep RUN (its sweep id, or a multi-spec launch's "a+b") from Ray Tune's state."""
    from diad.sweep import runner

    summary = _run(runner.resume, run, storage=storage, address=address, dashboard=not no_dashboard,
                   dashboard_host=dashboard_host, num_cpus=num_cpus)
    _print_summary(summary)


@main.command()
@click.argument("run")
@_storage
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts: the counts plus one record per trial.")
def status(run, storage, as_json):
    """Trials of sweep RUN by state (running, queued, done, failed) with step, loss, ETA and error; its result
    counts and cached trainings. Reads files only: works without Ray, while the sweep runs or after."""
    from diad.sweep import runner, trialstate

    summary = _run(runner.sweep_status, run, storage=storage)
    trials = _run(trialstate.trials, run, storage)
    if as_json:
        out = summary | {"trials": trials, "eta_s": trialstate.sweep_eta(trials)}
        click.echo(json.dumps(out, indent=1, default=str))
    else:
        click.echo("\n".join(trialstate.lines(summary, trials)))


@main.command(name="ls")
@_storage
def ls(storage):
    """List the sweeps under the storage root."""
    from diad.sweep import runner

    rows = _run(runner.list_sweeps, storage=storage)
    click.echo(f"{'sweep':24} {'ok':>5} {'failed':>6} {'pending':>7} {'trainings':>9}")
    for r in rows:
        pending = "?" if r["pending"] is None else r["pending"]
        click.echo(f"{r['sweep_id']:24} {r['ok']:>5} {r['failed']:>6} {pending:>7} {r['trainings_cached']:>9}")


if __name__ == "__main__":
    main()

"""The `diad` command: data synth, train, evaluate, predict. User errors print one line and exit 2."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing on a default path may download

import click  # noqa: E402

from diad.errors import DiadError  # noqa: E402


class UserError(click.ClickException):
    """Printed as `error: <one line>`, exit code 2, no traceback."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _one_line(exc: BaseException) -> str:
    if type(exc).__name__ == "ValidationError":  # pydantic, raised outside the config loader
        from diad.errors import validation_error

        return str(validation_error(exc, object, "config"))
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename}: file not found"
    return " ".join(str(exc).split())


class DiadGroup(click.Group):
    """Turns DiadError, FileNotFoundError and pydantic ValidationError into UserError."""

    def invoke(self, ctx: click.Context):
        from pydantic import ValidationError

        from diad.integrity import os_error_line

        try:
            return super().invoke(ctx)
        except (DiadError, FileNotFoundError, ValidationError) as e:
            raise UserError(_one_line(e)) from None
        except OSError as e:  # disk full, read-only or not-a-directory output: one line, not a traceback
            raise UserError(os_error_line(e)) from None


def _say_cache(cache_dir: Path | None, what: str) -> None:
    """Say once, on stderr, where this command's cache went (it may be large and outlive --out)."""
    from diad.io import cache_root

    where = cache_dir if cache_dir is not None else f"{cache_root()} (default; --cache-dir or $DIAD_CACHE moves it)"
    click.echo(f"cache: {what} under {where}", err=True)


@click.group(cls=DiadGroup)
def cli() -> None:
    """DiAD: diffusion-based multi-class anomaly detection (train, evaluate, predict)."""


@cli.group()
def data() -> None:
    """Datasets."""


@data.command("synth")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Generator seed.")
@click.option("--size", default=256, show_default=True, help="Image side in pixels (multiple of 8).")
@click.option("--train-per-category", default=48, show_default=True)
@click.option("--test-per-category", default=24, show_default=True)
@click.option("--categories", default=None, help="Comma-separated subset (default: all).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def data_synth(out: Path, seed: int, size: int, train_per_category: int, test_per_category: int,
               categories: str | None, overwrite: bool) -> None:
    """Write the synthetic-defect dataset (MVTec layout, exact masks) to OUT."""
    from diad.data import write_synth_dataset

    cats = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    path = write_synth_dataset(out, cats, train_per_category, test_per_category, size, seed, overwrite=overwrite)
    click.echo(str(path))


@cli.command("train")
@click.argument("config", type=click.Path(path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run directory (resumed if present).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Shared cache for autoencoders (default: $DIAD_CACHE or ~/.cache/diad).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def train_cmd(config: Path, overrides: tuple[str, ...], out: Path, cache_dir: Path | None, no_progress: bool) -> None:
    """Train the model of CONFIG.yaml (overrides: section.key=value ...) into --out; prints the result as JSON."""
    from diad.config import load_run_config
    from diad.integrity import ensure_writable_dir
    from diad.pipeline import train
    from diad.preflight import check_eval_settings

    run_cfg = load_run_config(config, overrides)
    check_eval_settings(run_cfg.eval, str(config))  # before training, not after it
    ensure_writable_dir(out, "--out")
    if cache_dir is not None:
        ensure_writable_dir(cache_dir, "--cache-dir")
    result = train(run_cfg, out, cache_dir=cache_dir, progress=not no_progress)
    click.echo(json.dumps(asdict(result), default=str, indent=1))
    _say_cache(cache_dir, "autoencoders")
    if run_cfg.data.format == "synth" and run_cfg.data.root is None:
        _say_cache(None, "the embedded synth data")


def _eval_configs(checkpoint: Path, overrides: tuple[str, ...]):
    """The checkpoint's RunConfig with data.*/eval.* overrides (model/train are fixed by the weights)."""
    from diad.config import with_overrides
    from diad.pipeline.trained import load_run_config_of, resolve_checkpoint

    bad = [o for o in overrides if not o.startswith(("data.", "eval."))]
    if bad:
        raise DiadError(f"override {bad[0]!r}: evaluate/predict take data.* and eval.* overrides only")
    path = resolve_checkpoint(checkpoint)
    return path, with_overrides(load_run_config_of(path), overrides, "override")


def _write_metrics(out: Path, checkpoint: Path, result) -> None:
    """metrics.json and metrics.parquet (one row per category incl. "mean"), both atomic."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from diad.io import atomic_file, atomic_write_text

    doc = {"checkpoint": str(checkpoint), **asdict(result)}
    atomic_write_text(out / "metrics.json", json.dumps(doc, indent=1, default=str))
    rows = [{"category": cat, "n_test_images": result.n_images.get(cat, 0), **metrics,
             "pixel_metrics_note": result.pixel_notes.get(cat),
             **{f"protocol.{k}": v for k, v in result.protocol.items()},
             "checkpoint": str(checkpoint), "eval_wall_s": result.wall_s, "recon_cached": result.recon_cached,
             "backbone_weights": result.backbone_weights, **result.diagnostics}  # per run, on each row
            for cat, metrics in result.per_category.items()]
    with atomic_file(out / "metrics.parquet") as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)


@cli.command("evaluate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Where metrics.json/.parquet go.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Reconstruction cache root.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def evaluate_cmd(checkpoint: Path, overrides: tuple[str, ...], out: Path, cache_dir: Path | None,
                 no_progress: bool) -> None:
    """Evaluate CHECKPOINT (a checkpoint or training dir) on the test split; per-category + mean metrics."""
    from diad.pipeline import evaluate

    from diad.integrity import ensure_writable_dir

    path, cfg = _eval_configs(checkpoint, overrides)
    ensure_writable_dir(out, "--out")  # before the reconstructions, not after them
    result = evaluate(path, cfg.data, cfg.eval, cache_dir=cache_dir, progress=not no_progress)
    _write_metrics(out, path, result)
    for cat, m in result.per_category.items():
        click.echo(f"{cat:>12}  I-AUROC {m['image_auroc']:.3f}  P-AUROC {m['pixel_auroc']:.3f}  "
                   f"AU-PRO {m['pixel_aupro']:.3f}  (n={result.n_images.get(cat, 0)})")
    for cat, note in result.pixel_notes.items():
        if cat != "mean":
            click.echo(f"warning: {cat}: pixel metrics are NaN: {note}", err=True)
    if result.diagnostics:
        d = result.diagnostics
        click.echo(f"  diagnostics  SG influence t999/600/300 {d['diag_sg_influence_t999']:.4f}/"
                   f"{d['diag_sg_influence_t600']:.4f}/{d['diag_sg_influence_t300']:.4f}  hint sensitivity "
                   f"{d['diag_hint_sensitivity']:.4f}  AE floor L1 {d['diag_ae_floor_l1']:.4f}")
    click.echo(f"wrote {out / 'metrics.json'} and {out / 'metrics.parquet'} ({result.wall_s:.1f} s)")
    _say_cache(cache_dir, "reconstructions")


@cli.command("diagnose")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where diagnostics.json goes (default: the run directory given as CHECKPOINT).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Reconstruction cache root.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def diagnose_cmd(checkpoint: Path, overrides: tuple[str, ...], out: Path | None, cache_dir: Path | None,
                 no_progress: bool) -> None:
    """Is the conditioning used? SG influence, hint sensitivity, reconstruction errors, autoencoder floor.

    The names and their definitions: diad/diagnostics.py. Overrides: data.* and eval.* (e.g. eval.diag_images=16).
    """
    import math

    from diad.integrity import ensure_writable_dir
    from diad.io import atomic_write_text
    from diad.pipeline import diagnose_checkpoint

    path, cfg = _eval_configs(checkpoint, overrides)
    target_dir = out if out is not None else Path(checkpoint)
    ensure_writable_dir(target_dir, "--out")
    figures = diagnose_checkpoint(path, cfg.data, cfg.eval, cache_dir=cache_dir, progress=not no_progress)
    doc = {"checkpoint": str(path), "variant": cfg.model.variant, "recon": cfg.eval.recon.model_dump(mode="json"),
           "diag_images": cfg.eval.diag_images or 8,
           "diagnostics": {k: (v if math.isfinite(v) else None) for k, v in figures.items()}}  # NaN -> null
    atomic_write_text(target_dir / "diagnostics.json", json.dumps(doc, indent=1))
    click.echo(f"{'diagnostic':<26} value   ({cfg.model.variant}, T={cfg.eval.forward_steps})")
    for name, value in figures.items():
        click.echo(f"{name:<26} {value:.4f}")
    click.echo(f"wrote {target_dir / 'diagnostics.json'}")


@cli.command("predict")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Where the PNG panels go.")
@click.option("--limit", default=16, show_default=True, help="Number of test images to draw.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Reconstruction cache root.")
def predict_cmd(checkpoint: Path, overrides: tuple[str, ...], out: Path, limit: int, cache_dir: Path | None) -> None:
    """PNG panels (input | reconstruction | anomaly map | mask) for test images of CHECKPOINT."""
    from diad.predict import write_panels

    from diad.integrity import ensure_writable_dir

    path, cfg = _eval_configs(checkpoint, overrides)
    ensure_writable_dir(out, "--out")
    written = write_panels(path, out, cfg.data, cfg.eval, limit=limit, cache_dir=cache_dir)
    click.echo(f"wrote {len(written)} panels to {out}")
    _say_cache(cache_dir, "reconstructions")


@cli.command("import-official")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run directory to write.")
@click.option("--context", type=click.Path(path_type=Path), default=None,
              help="CLIP('') embedding (77x768, .pt or .safetensors): the authors' constant context; default zeros.")
@click.option("--unsafe-pickle", is_flag=True, help="Allow a pickled .ckpt with Python objects (trusted files only).")
def import_official_cmd(checkpoint: Path, overrides: tuple[str, ...], out: Path, context: Path | None,
                        unsafe_pickle: bool) -> None:
    """Import the DiAD authors' trained CHECKPOINT (.ckpt or .safetensors, their key layout) as a run in --out;
    `diad evaluate OUT data.root=...` then evaluates it. OVERRIDES (section.key=value) adjust the run config."""
    from diad.official import import_official, official_run_config

    if (out / "checkpoints").exists():
        raise DiadError(f"--out {out}: already holds checkpoints; choose a new directory")
    path = import_official(checkpoint, out, official_run_config(overrides), context, unsafe_pickle)
    report = json.loads((out / "import.json").read_text())
    click.echo(f"mapped {report['mapped']} tensors, ignored {sum(report['ignored'].values())} "
               f"({'; '.join(report['ignored'])}); context: {report['context']}")
    click.echo(f"wrote {path}")


def main() -> None:
    """Entry point of the `diad` script."""
    cli(prog_name="diad")


if __name__ == "__main__":
    sys.exit(main())

"""The layers point one way: the diad core never imports Ray or pandas; analysis never imports torch or Ray."""

import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        check=True, capture_output=True, text=True,
    ).stdout
    return set(out.split())


CORE = ["diad.data.load", "diad.metrics.evaluate", "diad.models.diad_model", "diad.scoring.backbones",
        "diad.pipeline.training", "diad.pipeline.evaluation", "diad.predict", "diad.cli"]


@pytest.mark.parametrize("module", CORE)
def test_core_imports_no_ray_or_pandas(module):
    mods = _modules_after(f"import {module}")
    assert "ray" not in mods and "pandas" not in mods, module


def test_analysis_imports_no_torch_or_ray():
    mods = _modules_after("import analysis, analysis.tables, analysis.plots, analysis.report")
    assert "torch" not in mods and "ray" not in mods


@pytest.mark.parametrize("module", ["diad.config", "diad.schema", "diad.overrides", "diad.models", "diad.pipeline",
                                    "diad.sweep.spec", "diad.sweep.layout", "diad.pipeline.records"])
def test_configs_schema_and_packages_load_without_torch(module):
    """Cheap imports: configs, the schema and package namespaces load in well under a second (torch is lazy)."""
    assert "torch" not in _modules_after(f"import {module}"), module


def test_sweep_layer_never_imports_analysis():
    """`diad-sweep report` is a plugin command (entry point), so the sweep CLI does not import analysis."""
    mods = _modules_after("import diad.sweep.cli, diad.sweep.runner, diad.sweep.trainable")
    assert not any(m == "analysis" or m.startswith("analysis.") for m in mods)


def test_results_schema_doc_matches_the_schema_module():
    """docs/results-schema.md holds exactly the table diad/schema.py prints (columns, types, meanings)."""
    from pathlib import Path

    from diad.schema import markdown_table

    doc = (Path(__file__).resolve().parents[1] / "docs" / "results-schema.md").read_text()
    assert markdown_table() in doc, "docs/results-schema.md is stale: paste the output of `python -m diad.schema`"

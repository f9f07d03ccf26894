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


@pytest.mark.parametrize("module", ["diad.data", "diad.metrics", "diad.models", "diad.scoring", "diad.pipeline", "diad.cli"])
def test_core_imports_no_ray_or_pandas(module):
    mods = _modules_after(f"import {module}")
    assert "ray" not in mods and "pandas" not in mods, module


def test_analysis_imports_no_torch_or_ray():
    mods = _modules_after("import analysis, analysis.tables, analysis.plots, analysis.report")
    assert "torch" not in mods and "ray" not in mods

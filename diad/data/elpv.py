"""ELPV solar-cell images (the `elpv-dataset` package): image labels only, categories = cell types mono/poly.

labels.csv holds `images/cellNNNN.png <probability> <type>` per line, whitespace separated; probabilities are
0, 1/3, 2/3, 1. Fixed seeded split per type: train = 80% of the probability-0 cells; test = the other
probability-0 cells (normal) + the probability-1 cells (anomalous). The 1/3 and 2/3 cells are left out,
unless keep_uncertain (then they are test anomalies).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from diad.errors import DiadError
from diad.data.common import require_root, select_categories
from diad.data.sample import Sample, Split
from diad.data.splits import stable_order

TRAIN_FRACTION = 0.8  # of the normal cells of each type
LAYOUT = "an ELPV layout <root>/labels.csv ('images/cellNNNN.png <probability> <type>' lines) and <root>/images/"


@dataclass(frozen=True)
class ElpvCell:
    path: Path
    probability: float
    type: str


def elpv_default_root() -> Path:
    """The data directory shipped inside the installed `elpv-dataset` package."""
    try:
        import elpv_dataset
    except ImportError as e:
        raise DiadError("format 'elpv' with root=null needs the 'elpv-dataset' package "
                        "(pip install elpv-dataset)") from e
    return Path(elpv_dataset.__file__).parent / "data"


def read_elpv_labels(root: Path) -> list[ElpvCell]:
    """Parse labels.csv (no image is opened)."""
    labels = root / "labels.csv"
    if not labels.is_file():
        raise DiadError(f"ELPV labels file '{labels}' does not exist; expected {LAYOUT}")
    cells = []
    for i, line in enumerate(labels.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            cells.append(ElpvCell(root / parts[0], float(parts[1]), parts[2]))
        except (IndexError, ValueError):
            raise DiadError(f"'{labels}' line {i}: {line!r}, expected '<image path> <probability> <type>'") from None
    return cells


def _defect(p: float) -> str:
    return "good" if p == 0.0 else f"prob_{p:.2f}"


def load_elpv(root: Path | None, split: Split, categories: list[str] | None = None, seed: int = 0,
              keep_uncertain: bool = False) -> list[Sample]:
    """Samples of `split` for the chosen cell types (mono, poly)."""
    root = require_root(Path(root), LAYOUT) if root is not None else elpv_default_root()
    cells = read_elpv_labels(root)
    chosen = select_categories(sorted({c.type for c in cells}), categories, root / "labels.csv")
    out: list[Sample] = []
    for cat in chosen:
        normals = [c for c in cells if c.type == cat and c.probability == 0.0]
        ordered = stable_order(normals, lambda c: c.path.name, seed)
        train = set(ordered[: int(round(TRAIN_FRACTION * len(normals)))])
        if split == "train":
            if not train:
                raise DiadError(f"ELPV type '{cat}' has no probability-0 cells in '{root / 'labels.csv'}'")
            out += [Sample(c.path, None, 0, cat, "good", "train") for c in normals if c in train]
            continue
        for c in (c for c in cells if c.type == cat and c not in train):
            anomalous = c.probability >= 0.999 or (keep_uncertain and c.probability > 0.0)
            if c.probability == 0.0 or anomalous:
                out.append(Sample(c.path, None, int(anomalous), cat, _defect(c.probability), "test"))
    return out

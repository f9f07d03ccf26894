"""VisA through its split file <root>/split_csv/1cls.csv (columns object,split,label,image,mask; paths under root)."""

from __future__ import annotations

import csv
from pathlib import Path

from diad.errors import DiadError
from diad.data.common import require_root, select_categories
from diad.data.sample import Sample, Split

SPLIT_CSV = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")
LAYOUT = f"a VisA layout with <root>/{SPLIT_CSV.as_posix()} (columns {','.join(COLUMNS)})"


def _read_rows(csv_path: Path) -> list[dict[str, str]]:
    if not csv_path.is_file():
        raise DiadError(f"VisA split file '{csv_path}' does not exist; expected {LAYOUT}")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DiadError(f"'{csv_path}' lacks column(s) {missing}; expected columns {','.join(COLUMNS)}")
        return list(reader)


def _sample(root: Path, row: dict[str, str], line: int, csv_path: Path) -> Sample:
    label = row["label"].strip()
    if label not in ("normal", "anomaly"):
        raise DiadError(f"'{csv_path}' line {line}: label {label!r}, expected 'normal' or 'anomaly'")
    image = root / row["image"].strip()
    if not image.is_file():
        raise DiadError(f"'{csv_path}' line {line}: image '{image}' does not exist")
    mask = None
    if label == "anomaly" and (row["mask"] or "").strip():
        mask = root / row["mask"].strip()
        if not mask.is_file():
            raise DiadError(f"'{csv_path}' line {line}: mask '{mask}' does not exist")
    is_anomaly = label == "anomaly"
    return Sample(image, mask, int(is_anomaly), row["object"].strip(), "anomaly" if is_anomaly else "good",
                  row["split"].strip())  # type: ignore[arg-type]


def load_visa(root: Path, split: Split, categories: list[str] | None = None) -> list[Sample]:
    """Samples of `split` for the chosen objects, in csv order."""
    root = require_root(Path(root), LAYOUT)
    csv_path = root / SPLIT_CSV
    rows = _read_rows(csv_path)
    chosen = set(select_categories(sorted({r["object"].strip() for r in rows}), categories, csv_path))
    out = [_sample(root, r, i + 2, csv_path) for i, r in enumerate(rows)
           if r["object"].strip() in chosen and r["split"].strip() == split]
    if split == "train":
        for cat in sorted(chosen):
            if not any(s.category == cat and s.label == 0 for s in out):
                raise DiadError(f"category '{cat}' has no normal training rows in '{csv_path}'")
    return out

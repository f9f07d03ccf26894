"""Datasets: sample tables for MVTec-AD, VisA, folders, ELPV and the synthetic-defect set; a torch dataset."""

from diad.data.config import DataConfig
from diad.data.dataset import MASK_RULE, AnomalyDataset
from diad.data.load import ensure_default_dataset, load_samples
from diad.data.sample import Sample, has_pixel_masks
from diad.data.splits import split_train_val
from diad.data.synth import SYNTH_CATEGORIES, write_synth_dataset
from diad.data.synth_defects import DEFECT_TYPES
from diad.data.transforms import imagenet_normalize

__all__ = [
    "AnomalyDataset", "DataConfig", "DEFECT_TYPES", "MASK_RULE", "SYNTH_CATEGORIES", "Sample",
    "ensure_default_dataset", "has_pixel_masks", "imagenet_normalize", "load_samples", "split_train_val",
    "write_synth_dataset",
]

"""Datasets: sample tables for MVTec-AD, VisA, folders, ELPV and the synthetic-defect set; a torch dataset."""

from diad.lazy import lazy_exports

_EXPORTS = {
    "DataConfig": "diad.data.config",
    "MASK_RULE": "diad.data.dataset",
    "AnomalyDataset": "diad.data.dataset",
    "ensure_default_dataset": "diad.data.load",
    "load_samples": "diad.data.load",
    "Sample": "diad.data.sample",
    "has_pixel_masks": "diad.data.sample",
    "split_train_val": "diad.data.splits",
    "SYNTH_CATEGORIES": "diad.data.synth",
    "write_synth_dataset": "diad.data.synth",
    "DEFECT_TYPES": "diad.data.synth_defects",
    "imagenet_normalize": "diad.data.transforms",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

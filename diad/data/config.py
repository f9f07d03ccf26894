"""The `data` section of a run config: which dataset, where, which categories, at what size."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DataFormat = Literal["synth", "mvtec", "visa", "folder", "elpv"]


def _check_size(name: str, value: int) -> int:
    # The KL-f8 autoencoder downsamples by 8; tiny images make the backbone features meaningless.
    if value < 32 or value % 8 != 0:
        raise ValueError(f"{name}={value}: expected an integer >= 32 and a multiple of 8 (e.g. 64, 128, 256)")
    return value


class DataConfig(BaseModel):
    """Dataset selection; `root=None` means the embedded default (synth: generated cache, elpv: the package)."""

    model_config = ConfigDict(extra="forbid")

    format: DataFormat = "synth"
    root: Path | None = None
    categories: list[str] | None = None  # None = all categories found
    image_size: int = 256
    elpv_keep_uncertain: bool = False  # keep 0.33/0.67 cells in the test set, labelled anomalous
    split_seed: int = 0
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # held-out normal training images
    # format "folder" (anomalib Folder style); relative paths are taken under `root`
    normal_dir: Path | None = None
    abnormal_dir: Path | None = None
    mask_dir: Path | None = None
    # format "synth" with root=None: parameters of the generated default set
    synth_train_per_category: int = Field(48, ge=1)
    synth_test_per_category: int = Field(24, ge=2)  # about half of them defective
    synth_image_size: int = 256
    synth_seed: int = 0

    @field_validator("image_size")
    @classmethod
    def _image_size(cls, v: int) -> int:
        return _check_size("image_size", v)

    @field_validator("synth_image_size")
    @classmethod
    def _synth_size(cls, v: int) -> int:
        return _check_size("synth_image_size", v)

    @field_validator("categories")
    @classmethod
    def _categories(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("categories=[]: give at least one category, or null for all")
        return v

    @model_validator(mode="after")
    def _folder_fields(self) -> "DataConfig":
        if self.format == "folder" and self.normal_dir is None:
            raise ValueError("format 'folder' needs normal_dir (and usually abnormal_dir, mask_dir)")
        return self

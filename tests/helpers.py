"""Small helpers the tests share (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# The old TensorFlow tool's saved models (../shared/fixtures beside the checkout): tests that
# need them skip with a reason where a user's clone has none.
SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def tiny_model_files(folder: Path, seed: int) -> dict[str, Path]:
    """A freshly initialised ``tiny`` generator and critic saved as model files."""
    import torch

    from rxwgan.models import build_critic, build_generator, save_model

    torch.manual_seed(seed)
    paths = {"generator": folder / "generator.safetensors", "critic": folder / "critic.safetensors"}
    save_model(build_generator("tiny"), paths["generator"])
    save_model(build_critic("tiny"), paths["critic"])
    return paths


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2",
                slope: float | None = None, intercept: float | None = None,
                window: tuple[float, float] | None = None) -> Path:
    """A minimal uncompressed single-frame grayscale DICOM file."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept or 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def run_config(table: Path, out: Path, **overrides):
    """A TrainConfig for a few-second run: tiny model, 4 epochs, fold 0 of 5 (or as overridden)."""
    from rxwgan.data.splits import SplitSpec
    from rxwgan.train.config import TrainConfig

    values = dict(input=str(table), output=str(out), model="tiny", epochs=4, batch_size=4,
                  n_critic=2, fold=0, n_splits=5, save_for_each=2, disp_for_each=2,
                  precision="fp32", progress=False)
    values.update(overrides)
    values["split"] = SplitSpec(fold=values.pop("fold"), n_splits=values.pop("n_splits"))
    return TrainConfig(**values)


def quiet(_: str) -> None:
    """A log function that drops every line."""


def killer_script(epoch: int, batch: int, signal_name: str = "SIGKILL") -> str:
    """Python source that runs the CLI and sends ``signal_name`` to itself at a batch of an epoch."""
    return f"""
import os, signal, sys
from rxwgan.train import loop
original_epoch, original_step = loop.Trainer._train_epoch, loop.critic_step
where = dict(epoch=0, index=-1)
def train_epoch(self, epoch):
    where.update(epoch=epoch, index=-1)
    return original_epoch(self, epoch)
def step(*args, **kwargs):
    where["index"] += 1
    if where["epoch"] == {epoch} and where["index"] == {batch}:
        os.kill(os.getpid(), signal.{signal_name})
    return original_step(*args, **kwargs)
loop.Trainer._train_epoch, loop.critic_step = train_epoch, step
from rxwgan.cli import main
sys.exit(main(sys.argv[1:]))
"""

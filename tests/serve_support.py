"""Small model folders for the export, serve and browser tests (untrained, 64 px, fast)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from braintumor.data.preprocess import PreprocessSpec
from braintumor.models import build_model
from braintumor.models.folder import ModelInfo, save_model_dir

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


def make_model_dir(folder: Path, task: str = "classify", size: int = 64) -> Path:
    """A saved resnet18 classifier (4 classes) or U-Net segmenter over 1-channel input."""
    torch.manual_seed(0)
    if task == "classify":
        arch, outputs, names, args = "resnet18", 4, CLASSES, {"zero_init_last": False}
    else:
        arch, outputs, names, args = "unet", 1, ["tumor"], {}
    net = build_model(arch, num_classes=outputs, in_channels=1, **args)
    info = ModelInfo(
        task=task,
        architecture=arch,
        num_outputs=outputs,
        in_channels=1,
        class_names=names,
        image_size=size,
        model_args=args,
        preprocessing=PreprocessSpec(image_size=size, in_channels=1).to_dict(),
        metrics={"accuracy": 0.25},
        data_fingerprint={"digest": "synthetic"},
        recipe={"name": "test"},
    )
    return save_model_dir(net, info, folder)


def png_bytes(height: int = 70, width: int = 90, seed: int = 0) -> bytes:
    """A grey PNG with a bright blob, as bytes."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((height, width)) * 80).astype(np.uint8)
    pixels[20:40, 30:55] = 240
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def dicom_slice_bytes(z: float, number: int) -> bytes:
    """One 20x24 MR slice of series 1.2.3.4 at height ``z`` (mm), as DICOM Part 10 bytes."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.Modality = "MR"
    ds.InstanceNumber = number
    ds.Rows, ds.Columns = 20, 24
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelSpacing = [0.5, 0.8]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0.0, 0.0, z]
    pixels = np.random.default_rng(number).integers(0, 1000, size=(20, 24), dtype=np.uint16)
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class LiveServer:
    """The app served by uvicorn on a free 127.0.0.1 port in a thread; stop() ends it."""

    def __init__(self, app: object) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time

        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for its thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)

"""Small model folders for the export, serve and browser tests (untrained, 64 px, fast)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from model_support import save_untrained

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


def make_model_dir(folder: Path, task: str = "classify", size: int = 64) -> Path:
    """A saved resnet18 classifier (4 classes) or U-Net segmenter over 1-channel input."""
    if task == "classify":
        arch, names, args = "resnet18", CLASSES, {"zero_init_last": False}
    else:
        arch, names, args = "unet", ["tumor"], {}
    return save_untrained(
        folder,
        task,
        arch,
        names,
        args,
        image_size=size,
        metrics={"accuracy": 0.25},
        data_fingerprint={"digest": "synthetic"},
        recipe={"name": "test"},
    )


def png_bytes(height: int = 70, width: int = 90, seed: int = 0) -> bytes:
    """A grey PNG with a bright blob, as bytes."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((height, width)) * 80).astype(np.uint8)
    pixels[20:40, 30:55] = 240
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
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

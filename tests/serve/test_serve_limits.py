"""The web app's memory bounds: pixel limits read from headers, a cap on concurrent heavy
requests, and a real server's peak memory while large uploads arrive together."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="needs the serve extra (fastapi, uvicorn)")

import httpx
from fastapi.testclient import TestClient

from braintumor.serve import pipeline
from braintumor.serve.app import create_app
from braintumor.serve.limits import HeavyWork
from braintumor.serve.security import UploadError
from serve_support import make_model_dir, png_bytes

#: The memory test's server: 4 MP images, two requests decoded at once.
MAX_PIXELS, MAX_CONCURRENT = 4_000_000, 2
#: Stated bound (docs/reliability.md): peak resident memory grows by less than 150 bytes per
#: pixel of the limit per concurrent request, however many uploads arrive together.
PEAK_GROWTH_BOUND_MB = 150 * MAX_PIXELS * MAX_CONCURRENT / 1e6


def _gradient_png(height: int, width: int) -> bytes:
    """A large but small-to-send PNG (smooth content compresses well)."""
    row = np.linspace(0, 255, width, dtype=np.float32)
    pixels = (row[None, :] * np.linspace(0.2, 1, height, dtype=np.float32)[:, None]).astype(
        np.uint8
    )
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("models") / "cls")


@pytest.fixture(scope="module")
def client(classifier: Path) -> TestClient:
    return TestClient(create_app([classifier], max_pixels=1_000_000))


def _post(client: TestClient, name: str, data: bytes):
    return client.post("/api/predict", files={"file": (name, data)}, data={"model": "cls"})


def test_image_over_the_pixel_limit_is_refused_before_decoding(client, monkeypatch) -> None:
    def no_decoding(*_args, **_kwargs):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(pipeline, "read_image", no_decoding)
    reply = _post(client, "huge.png", _gradient_png(1500, 1000))
    assert reply.status_code == 413
    error = reply.json()["error"]
    assert error.startswith("huge.png: 1500 x 1000 = 1.5 MP pixels") and "--max-pixels" in error


def test_image_under_the_limit_is_served(client) -> None:
    assert _post(client, "ok.png", png_bytes(200, 300)).status_code == 200


def test_volume_over_the_voxel_limit_is_refused(client, tmp_path) -> None:
    path = tmp_path / "big.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((200, 200, 120), np.uint8), np.eye(4)), path)
    reply = _post(client, "big.nii.gz", path.read_bytes())
    assert reply.status_code == 413
    assert "big.nii.gz: 200 x 200 x 120 = 4.8 MP voxels" in reply.json()["error"]


def test_nan_nifti_is_named_once(client, tmp_path) -> None:
    volume = np.full((20, 20, 3), np.nan, np.float32)
    path = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    reply = _post(client, "x.nii.gz", path.read_bytes())
    assert reply.status_code == 422
    error = reply.json()["error"]
    assert error.startswith("x.nii.gz:") and ".nii.gz.nii" not in error, error


def test_heavy_requests_wait_for_a_slot_then_get_503() -> None:
    heavy = HeavyWork(limit=1, wait=0.2)
    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with heavy.slot():
            entered.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(5)
    with pytest.raises(UploadError) as refused, heavy.slot():
        pass
    assert refused.value.status == 503 and "server busy" in str(refused.value)
    release.set()
    holder.join()
    with heavy.slot():  # free again
        pass


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc (Linux)")
def test_peak_memory_stays_bounded_while_large_uploads_arrive_together(classifier) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "braintumor.cli", "serve", str(classifier),
        "--host", "127.0.0.1", "--port", str(port),
        "--max-pixels", str(MAX_PIXELS), "--max-concurrent", str(MAX_CONCURRENT),
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "no server"
            time.sleep(0.5)
        with httpx.Client(base_url=url, timeout=300) as http:  # warm up: first inference
            files = {"file": ("small.png", png_bytes())}
            assert http.post("/api/predict", files=files).status_code == 200
        baseline = _peak_rss_mb(server.pid)
        at_limit = _gradient_png(2000, 2000)  # 4 MP: accepted
        far_above = _gradient_png(12000, 12000)  # 144 MP: refused from the header

        def upload(i: int) -> int:
            data = far_above if i >= 4 else at_limit
            with httpx.Client(base_url=url, timeout=300) as http:
                reply = http.post("/api/predict", files={"file": (f"{i}.png", data)})
                return reply.status_code

        with ThreadPoolExecutor(max_workers=6) as pool:  # four at the limit, two far above
            codes = list(pool.map(upload, range(6)))
        growth = _peak_rss_mb(server.pid) - baseline
        assert codes == [200, 200, 200, 200, 413, 413]
        assert growth < PEAK_GROWTH_BOUND_MB, f"peak RSS grew by {growth:.0f} MB"
        print(f"peak RSS growth {growth:.0f} MB over a {baseline:.0f} MB baseline")
    finally:
        server.terminate()
        server.wait(timeout=30)

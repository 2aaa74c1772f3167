"""The web app's JSON API: predictions, volumes, and every kind of bad upload."""

from __future__ import annotations

import base64
import io
import json
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="needs the serve extra (fastapi, uvicorn)")

import httpx
from fastapi.testclient import TestClient

from braintumor.serve.app import create_app
from dicom_support import dicom_slice_bytes
from serve_support import CLASSES, LiveServer, make_model_dir, png_bytes


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("models")
    return [make_model_dir(root / "cls"), make_model_dir(root / "seg", "segment")]


@pytest.fixture(scope="module")
def client(model_dirs: list[Path]) -> TestClient:
    return TestClient(create_app(model_dirs, max_upload_mb=1))


def _png(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def _post(client: TestClient, name: str, data: bytes, model: str = "cls", **form: str):
    return client.post("/api/predict", files={"file": (name, data)}, data={"model": model, **form})


def test_health_and_model_cards(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    cards = {c["name"]: c for c in client.get("/api/models").json()}
    assert set(cards) == {"cls", "seg"}
    assert cards["cls"]["class_names"] == CLASSES
    assert cards["cls"]["architecture"] == "resnet18"
    assert cards["seg"]["task"] == "segment"
    assert (cards["cls"]["outputs"], cards["seg"]["outputs"]) == ("classes", "mask")
    assert cards["cls"]["recipe"] == "test" and "data_fingerprint" not in cards["cls"]
    page = client.get("/")
    assert page.status_code == 200 and "<svg" not in page.text  # the chart is drawn by script
    assert "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")  # no CDN


def test_classify_png(client: TestClient) -> None:
    reply = _post(client, "slice.jpg", png_bytes())  # the name lies; the bytes decide
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["task"] == "classify" and body["id"] == "slice" and body["outputs"] == "classes"
    assert set(body["probabilities"]) == set(CLASSES)
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-5
    assert body["predicted_class"] == max(body["probabilities"], key=body["probabilities"].get)
    assert _png(body["overlay_png"]).size == (90, 70)
    explained = _post(client, "s.png", png_bytes(), target="pituitary").json()
    assert explained["target_class"] == "pituitary"
    assert explained["gradcam_png"] != body["gradcam_png"] or body["predicted_class"] == "pituitary"


def test_segment_png_has_localization_and_mask(client: TestClient) -> None:
    body = _post(client, "s.png", png_bytes(), model="seg").json()
    assert body["task"] == "segment" and body["outputs"] == "mask"
    mask = np.asarray(_png(body["mask_png"]))
    assert mask.shape == (70, 90)
    assert body["area_px"] == int((mask > 0).sum())
    assert body["localization"]["total_area_px"] == body["area_px"]
    assert _png(body["overlay_png"]).size == (90, 70)


def test_nifti_volume_gives_volume_and_mask(client: TestClient, tmp_path: Path) -> None:
    volume = np.random.default_rng(0).random((30, 36, 5)).astype(np.float32)
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "v.nii.gz")
    body = _post(client, "v.nii.gz", (tmp_path / "v.nii.gz").read_bytes(), model="seg").json()
    assert body["n_slices"] == 5 and body["slice"] == 2
    assert len(body["stack"]) == 5
    (tmp_path / "mask.nii.gz").write_bytes(base64.b64decode(body["mask_nifti"]))
    mask = nib.load(tmp_path / "mask.nii.gz")
    assert mask.shape == (30, 36, 5)
    np.testing.assert_allclose(mask.affine, affine)
    voxels = int(np.asarray(mask.dataobj).sum())
    assert body["volume_voxels"] == voxels
    assert body["volume_ml"] == pytest.approx(voxels * 0.5 / 1000)
    chosen = _post(client, "v.nii", (tmp_path / "v.nii.gz").read_bytes(), model="cls", slice="4")
    assert chosen.json()["slice"] == 4
    assert len(chosen.json()["stack"][0]["probabilities"]) == 4


def test_zip_of_a_dicom_series(client: TestClient) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n, z in enumerate((0.0, 3.0, 6.0)):
            archive.writestr(f"series/IM{n}", dicom_slice_bytes(z, n + 1))
    body = _post(client, "series.zip", buffer.getvalue(), model="seg").json()
    assert body["n_slices"] == 3 and body["kind"] == "zip"
    assert body["volume_ml"] == pytest.approx(body["volume_voxels"] * 0.5 * 0.8 * 3.0 / 1000)


def test_zip_of_a_patient_folder_gives_the_patients_summary(client: TestClient) -> None:
    patient = "TCGA_AB_0001_20000101"
    mask = io.BytesIO()
    Image.fromarray(np.zeros((70, 90), dtype=np.uint8)).save(mask, format="PNG")
    entries = {f"{patient}/{patient}_{n}.png": png_bytes(seed=n) for n in (1, 2, 10)}
    entries |= {f"{patient}/{patient}_{n}_mask.png": mask.getvalue() for n in (1, 2, 10)}
    reply = _post(client, "patient.zip", _zip(entries), model="seg")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["id"] == patient and body["n_slices"] == 3 and body["outputs"] == "mask"
    summary = body["patient"]
    assert summary["patient"] == patient and summary["n_slices"] == 3
    assert "reference_dice" in summary  # the reference masks came along
    assert [item["index"] for item in body["stack"]] == [1, 2, 10]  # slice order, not text
    assert body["area_px"] == sum(item["area_px"] for item in body["stack"])
    assert body["area_px"] == summary["volume_voxels"]
    assert (body["n_components"] > 0) is body["tumor"]
    assert _png(body["overlay_png"]).size == (90, 70)
    refused = _post(client, "patient.zip", _zip(entries), model="cls")
    assert refused.status_code == 422 and "segmenters" in refused.json()["error"]
    other = "TCGA_AB_0002_20000101"
    two = entries | {f"{other}/{other}_{n}.png": png_bytes(seed=n) for n in (1, 2)}
    assert "one patient folder" in _post(client, "p.zip", _zip(two), model="seg").json()["error"]


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "status", "message"),
    [
        ("big.png", b"\x89PNG\r\n\x1a\n" + bytes(2 << 20), 413, "larger than"),
        ("notes.png", b"just some text, not an image", 415, "unsupported"),
        ("anim.png", b"GIF89a" + bytes(100), 415, "GIF"),
        ("empty.png", b"", 400, "empty"),
        ("cut.png", png_bytes()[:120], 422, "cut.png"),
        ("up.zip", _zip({"../../etc/evil.dcm": b"x"}), 400, "outside the archive"),
        ("abs.zip", _zip({"/tmp/evil.dcm": b"x"}), 400, "outside the archive"),
        ("bomb.zip", _zip({"zeros.dcm": bytes(8 << 20)}), 413, "bomb"),
        ("junk.zip", b"PK\x03\x04" + bytes(64), 400, "zip"),
    ],
)
def test_bad_uploads_are_4xx_json_and_the_server_stays_up(
    client: TestClient, name: str, data: bytes, status: int, message: str
) -> None:
    reply = _post(client, name, data)
    assert reply.status_code == status, reply.text
    assert message in reply.json()["error"]
    assert "/tmp/braintumor-serve" not in reply.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_unknown_model_and_bad_slice(client: TestClient) -> None:
    assert _post(client, "a.png", png_bytes(), model="nope").status_code == 404
    assert _post(client, "a.png", png_bytes(), slice="../1").status_code == 400


def test_temporary_files_are_removed(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert _post(client, "a.png", png_bytes(), model="seg").status_code == 200
    assert _post(client, "b.png", b"not an image").status_code == 415
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("braintumor-serve-")]


def test_parallel_requests_on_a_real_server(model_dirs: list[Path]) -> None:
    server = LiveServer(create_app(model_dirs))
    try:
        payloads = [png_bytes(seed=i) for i in range(20)]

        def one(i: int) -> tuple[int, dict]:
            model = "cls" if i % 2 else "seg"
            with httpx.Client(base_url=server.url, timeout=120) as http:
                files = {"file": (f"{i}.png", payloads[i])}
                reply = http.post("/api/predict", files=files, data={"model": model})
                return reply.status_code, reply.json()

        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(one, range(20)))
        assert [code for code, _ in results] == [200] * 20
        assert [body["id"] for _, body in results] == [str(i) for i in range(20)]
        # Same image, same model -> same answer, whatever ran beside it.
        again = one(1)[1]
        assert json.dumps(again["probabilities"]) == json.dumps(results[1][1]["probabilities"])
    finally:
        server.stop()


def test_body_without_a_length_is_bounded_too(client: TestClient) -> None:
    def chunks():
        for _ in range(3):
            yield b"x" * (512 << 10)

    headers = {"content-type": "multipart/form-data; boundary=b"}
    reply = client.post("/api/predict", content=chunks(), headers=headers)
    assert reply.status_code == 413
    assert "larger than 1 MiB" in reply.json()["error"]

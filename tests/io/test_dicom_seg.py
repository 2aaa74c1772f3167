"""DICOM SEG output: ``predict --format dicom-seg`` on DICOM made in the test, read back with
pydicom/highdicom: geometry, referenced source instances, segment labels and pixels."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from braintumor.cli.predict import predict_command
from braintumor.errors import DataError
from braintumor.io import read_dicom_series
from braintumor.io.dicom_seg import source_frames, write_dicom_seg
from dicom_support import COLS, PIXEL_SPACING, ROWS, dicom_slice_bytes, write_series
from serve_support import make_model_dir

app = typer.Typer()
app.command()(predict_command)
runner = CliRunner()


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("seg") / "model", "segment", size=32)


def _referenced(seg: pydicom.Dataset) -> list[str]:
    return [uid for _, _, uid in hd.seg.Segmentation.from_dataset(seg).get_source_image_uids()]


def test_predict_writes_a_seg_over_the_predicted_slice(tmp_path: Path, segmenter: Path) -> None:
    uids = write_series(tmp_path / "scans" / "series", n=5)
    out = tmp_path / "out"
    args = [str(segmenter), str(tmp_path / "scans"), "--out", str(out), "--format", "dicom-seg"]
    result = runner.invoke(app, [*args, "--threshold", "0.5", "--all-components"])
    assert result.exit_code == 0, result.output
    seg_path = out / "series_z2_seg.dcm"
    seg = pydicom.dcmread(seg_path)
    assert seg.Modality == "SEG" and seg.SOPClassUID == pydicom.uid.SegmentationStorage
    assert (seg.Rows, seg.Columns, int(seg.NumberOfFrames)) == (ROWS, COLS, 1)
    assert _referenced(seg) == [uids[2]]  # the middle slice, and only it
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == list(PIXEL_SPACING)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Tumour"]
    source = pydicom.dcmread(tmp_path / "scans" / "series" / "IM0002")
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    # The SEG's pixels are the PNG mask's.
    png = np.asarray(Image.open(out / "series_z2_mask.png")) > 0
    assert np.array_equal(seg.pixel_array.reshape(ROWS, COLS).astype(bool), png)
    assert '"dicom_seg": "series_z2_seg.dcm"' in (out / "summary.json").read_text()


def test_one_dicom_file_gives_a_one_frame_seg(tmp_path: Path, segmenter: Path) -> None:
    uids = write_series(tmp_path / "one", n=1)
    dcm = tmp_path / "one" / "IM0000"
    out = tmp_path / "out"
    result = runner.invoke(app, [str(segmenter), str(dcm), "-o", str(out), "--format", "dicom-seg"])
    assert result.exit_code == 0, result.output
    seg = pydicom.dcmread(out / "IM0000_seg.dcm")
    assert (seg.Rows, seg.Columns, int(seg.NumberOfFrames)) == (ROWS, COLS, 1)
    assert _referenced(seg) == uids


def test_whole_series_seg_with_brats_regions(tmp_path: Path) -> None:
    uids = write_series(tmp_path / "series", n=4)
    volume = read_dicom_series(tmp_path / "series")
    wt = np.zeros(volume.array.shape, dtype=bool)
    wt[4:14, 5:18, 1:3] = True
    tc = np.zeros_like(wt)
    tc[6:10, 8:12, 1:3] = True
    et = np.zeros_like(wt)
    et[7:9, 9:11, 2] = True
    frames = source_frames(volume, wt)
    regions = {name: np.moveaxis(m, 2, 0) for name, m in {"WT": wt, "TC": tc, "ET": et}.items()}
    path = write_dicom_seg(frames, regions, tmp_path / "case_seg.dcm")
    seg = hd.seg.segread(path)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["WT", "TC", "ET"]
    assert int(seg.NumberOfFrames) == 4 * 3
    assert sorted(_referenced(seg)) == sorted(uids)
    for number, mask in enumerate((wt, tc, et), start=1):
        for index, uid in enumerate(uids):
            pixels = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=[uid], segment_numbers=[number]
            )
            assert np.array_equal(pixels[0, :, :, 0].astype(bool), mask[:, :, index])


def test_non_dicom_input_is_a_one_line_error(tmp_path: Path, segmenter: Path) -> None:
    png = tmp_path / "slice.png"
    Image.fromarray(np.zeros((20, 24), dtype=np.uint8)).save(png)
    result = runner.invoke(
        app, [str(segmenter), str(png), "-o", str(tmp_path / "out"), "--format", "dicom-seg"]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [f"error: {png}: --format dicom-seg needs DICOM input (a file or a series)"]
    assert not (tmp_path / "out").exists()


def test_a_dicom_without_study_is_named_in_a_one_line_error(tmp_path: Path) -> None:
    write_series(tmp_path / "one", n=1)
    ds = pydicom.dcmread(tmp_path / "one" / "IM0000")
    del ds.StudyInstanceUID
    ds.save_as(tmp_path / "bare.dcm")
    image = read_dicom_series(tmp_path / "one")
    image.meta["files"] = [str(tmp_path / "bare.dcm")]
    with pytest.raises(DataError, match=r"bare\.dcm: cannot make a DICOM SEG"):
        write_dicom_seg(source_frames(image, np.ones((ROWS, COLS, 1), bool)), None, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_dicom_a_seg_cannot_be_made_from_is_listed_as_an_error(
    tmp_path: Path, segmenter: Path
) -> None:
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(dicom_slice_bytes(0.0, 1))  # no study or frame of reference UID
    good = tmp_path / "good"
    write_series(good, n=1)
    out = tmp_path / "out"
    args = [
        str(segmenter),
        str(bare),
        str(good / "IM0000"),
        "-o",
        str(out),
        "--format",
        "dicom-seg",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [r["dicom_seg"] for r in summary["images"]] == ["IM0000_seg.dcm"]
    assert [e["id"] for e in summary["errors"]] == ["bare"]
    assert "cannot make a DICOM SEG" in summary["errors"][0]["error"]
    assert not (out / "bare_seg.dcm").exists()

"""Readers and writers in braintumor.io, on real shared files and on small files written here."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
import scipy.io
import tifffile
from PIL import Image, ImageFile
from pydicom.uid import generate_uid

from braintumor.errors import DataError, ImageReadError
from braintumor.io import (
    SUPPORTED_SUFFIXES,
    coco_polygons_to_mask,
    is_image_file,
    mask_to_labels,
    read_dicom_series,
    read_figshare_label,
    read_figshare_mat,
    read_image,
    read_mask,
    to_grey,
    to_rgb,
    write_nifti,
    write_png,
)
from dicom_support import mr_dataset

BRATS_CASE = "brats2013-4cases/brats_2013_pat0001_1"


def _first(folder: Path, pattern: str = "*") -> Path:
    return sorted(folder.glob(pattern))[0]


# ---- real files -------------------------------------------------------------------------------


def test_sartaj_jpeg_reads_as_rgb_uint8(shared_data: Path) -> None:
    path = _first(shared_data / "sartaj-4class/Training/glioma_tumor")
    image = read_image(path)
    with Image.open(path) as reference:
        assert image.array.shape == (reference.height, reference.width, 3)
    assert image.array.dtype == np.uint8
    assert image.meta["format"] == "jpeg"
    assert image.spacing is None and image.affine is None


def test_navoneel_png_named_jpg_is_read_by_content(shared_data: Path) -> None:
    rgba = read_image(shared_data / "navoneel-binary/no/no 96.jpg")
    assert rgba.meta["format"] == "png" and rgba.meta["mode"] == "RGBA"
    assert rgba.meta["had_alpha"] and rgba.array.ndim == 3 and rgba.array.shape[2] == 3
    palette = read_image(shared_data / "navoneel-binary/no/no 98.jpg")
    assert palette.meta["mode"] == "P" and palette.array.shape[2] == 3
    grey = read_image(shared_data / "navoneel-binary/yes/Y14.jpg")
    assert grey.meta["mode"] == "L" and grey.array.ndim == 2 and grey.array.dtype == np.uint8


def test_figshare_png_pair_reads_and_mask_is_binary(shared_data: Path) -> None:
    image = read_image(shared_data / "figshare-seg/images/1.png")
    assert image.array.shape == (256, 256) and image.array.dtype == np.uint8
    mask = read_mask(shared_data / "figshare-seg/masks/1.png", like=image)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    raw = np.asarray(Image.open(shared_data / "figshare-seg/masks/1.png"))
    assert np.array_equal(mask, (raw == 255).astype(np.uint8))


def test_brats_nifti_volume_label_and_brainmask(shared_data: Path) -> None:
    case = shared_data / BRATS_CASE
    flair = read_image(case / "Flair_subtrMeanDivStd.nii.gz")
    assert flair.array.shape == (240, 240, 155) and flair.array.dtype == np.float32
    assert flair.spacing == (1.0, 1.0, 1.0)
    assert np.allclose(flair.affine, nib.load(case / "Flair_subtrMeanDivStd.nii.gz").affine)
    assert isinstance(flair.meta["nifti_header"], nib.Nifti1Header)
    labels = read_mask(case / "OTMultiClass.nii.gz", like=flair)
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}
    brain = read_mask(case / "brainmask.nii.gz", like=flair)
    assert set(np.unique(brain)) == {0, 1}
    assert 0.05 < brain.mean() < 0.5  # a head inside a 240^3 box, not all or nothing


def test_nifti_round_trip_keeps_affine_and_header(shared_data: Path, tmp_path: Path) -> None:
    flair = read_image(shared_data / BRATS_CASE / "Flair_subtrMeanDivStd.nii.gz")
    labels = read_mask(shared_data / BRATS_CASE / "OTMultiClass.nii.gz", like=flair)
    out = write_nifti(labels, tmp_path / "pred" / "seg.nii.gz", reference=flair)
    back = nib.load(out)
    assert back.get_data_dtype() == np.uint8
    assert np.allclose(back.affine, flair.affine)
    assert back.header.get_xyzt_units() == flair.meta["nifti_header"].get_xyzt_units()
    assert np.array_equal(np.asarray(back.dataobj), labels)
    assert [p.name for p in out.parent.iterdir()] == ["seg.nii.gz"]  # no temp file left


def test_write_nifti_with_explicit_affine_and_uncompressed(tmp_path: Path) -> None:
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    affine[:3, 3] = [10, -20, 5]
    volume = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    out = write_nifti(volume, tmp_path / "v.nii", affine=affine)
    back = read_image(out)
    assert np.allclose(back.affine, affine) and back.spacing == (0.5, 0.5, 2.0)
    assert np.array_equal(back.array, volume)
    with pytest.raises(DataError, match="must end with"):
        write_nifti(volume, tmp_path / "v.png")


# ---- files written here -----------------------------------------------------------------------


def test_tiff_16bit_grey_and_3_channel(tmp_path: Path) -> None:
    grey = (np.arange(64 * 48, dtype=np.uint32).reshape(64, 48) * 20).astype(np.uint16)
    tifffile.imwrite(tmp_path / "g.tif", grey)
    loaded = read_image(tmp_path / "g.tif")
    assert loaded.array.dtype == np.uint16 and np.array_equal(loaded.array, grey)

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    assert np.array_equal(read_image(tmp_path / "c.tif").array, rgb)
    # Planar (channel-first) storage comes back channels-last.
    tifffile.imwrite(
        tmp_path / "p.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate"
    )
    assert np.array_equal(read_image(tmp_path / "p.tif").array, rgb)


def test_tiff_stack_is_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 16, 16), dtype=np.uint8))
    with pytest.raises(ImageReadError, match="only single 2D images"):
        read_image(tmp_path / "stack.tif")


def _dicom_slice(
    path: Path, value: int, z: float | None, number: int, series: str, mono: str = "MONOCHROME2"
) -> None:
    ds = mr_dataset(4, 6)
    ds.SeriesInstanceUID = series
    ds.PatientID = "P1"
    ds.InstanceNumber = number
    ds.PhotometricInterpretation = mono
    ds.PixelSpacing = [0.5, 0.8]
    ds.RescaleSlope, ds.RescaleIntercept = 2, -10
    if z is not None:
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-30.0, -40.0, z]
    pixels = np.full((4, 6), value, dtype=np.uint16)
    pixels[0, 0] = value + 1  # mark the first stored pixel to check the row/column order
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_series_ordered_by_position_with_affine(tmp_path: Path) -> None:
    series = generate_uid()
    # File names and InstanceNumbers both disagree with the true order along z.
    _dicom_slice(tmp_path / "a.dcm", 30, z=5.0, number=1, series=series)
    _dicom_slice(tmp_path / "b.dcm", 10, z=0.0, number=3, series=series)
    _dicom_slice(tmp_path / "c.dcm", 20, z=2.5, number=2, series=series)
    volume = read_dicom_series(tmp_path)
    assert volume.array.shape == (4, 6, 3) and volume.array.dtype == np.float32
    # Rescale applied: stored v -> 2 v - 10, slices in z order 10, 20, 30.
    assert [float(volume.array[1, 1, k]) for k in range(3)] == [10.0, 30.0, 50.0]
    assert volume.array[0, 0, 0] == 2 * 11 - 10
    assert volume.spacing == (0.5, 0.8, 2.5)
    assert volume.meta["ordered_by"] == "ImagePositionPatient"
    # Voxel (row 1, col 2, slice 2) in LPS is (-30 + 2*0.8, -40 + 1*0.5, 5); RAS flips x, y.
    world = volume.affine @ np.array([1, 2, 2, 1.0])
    assert np.allclose(world[:3], [30 - 1.6, 40 - 0.5, 5.0])
    assert np.array_equal(read_image(tmp_path).array, volume.array)  # a folder is a series
    single = read_image(tmp_path / "a.dcm")
    assert single.spacing == (0.5, 0.8) and float(single.array[1, 1]) == 50.0


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    _dicom_slice(
        tmp_path / "m1.dcm", 20, z=0.0, number=1, series=generate_uid(), mono="MONOCHROME1"
    )
    array = read_image(tmp_path / "m1.dcm").array
    # Rescaled: pixel (0, 0) 2*21-10 = 32, the rest 2*20-10 = 30; MONOCHROME1 swaps them.
    assert float(array[0, 0]) == 30.0 and float(array[1, 1]) == 32.0


def test_dicom_series_without_positions_uses_instance_number(tmp_path: Path) -> None:
    series = generate_uid()
    for name, value, number in (("x.dcm", 7, 3), ("y.dcm", 5, 1), ("z.dcm", 6, 2)):
        _dicom_slice(tmp_path / name, value, z=None, number=number, series=series)
    volume = read_dicom_series(tmp_path)
    assert volume.meta["ordered_by"] == "InstanceNumber" and volume.affine is None
    assert [float(volume.array[2, 2, k]) for k in range(3)] == [0.0, 2.0, 4.0]


def test_dicom_folder_with_two_series_needs_a_choice(tmp_path: Path) -> None:
    first, second = generate_uid(), generate_uid()
    _dicom_slice(tmp_path / "a.dcm", 1, z=0.0, number=1, series=first)
    _dicom_slice(tmp_path / "b.dcm", 2, z=0.0, number=1, series=second)
    with pytest.raises(ImageReadError, match="2 series"):
        read_dicom_series(tmp_path)
    assert read_dicom_series(tmp_path, series_uid=second).array.shape == (4, 6, 1)


def _matlab_v73(path: Path, image: np.ndarray, mask: np.ndarray, label: int, pid: str) -> None:
    """Lay the file out as MATLAB's save -v7.3 does: HDF5 after a 512-byte text userblock,
    column-major arrays (stored transposed), char as uint16, MATLAB_class attributes."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        group = handle.create_group("cjdata")
        group.attrs["MATLAB_class"] = np.bytes_("struct")
        for name, data, cls in (
            ("image", image.T, "int16"),
            ("tumorMask", mask.T.astype(np.uint8), "logical"),
            ("label", np.array([[float(label)]]), "double"),
            ("tumorBorder", np.zeros((1, 8)), "double"),
        ):
            group.create_dataset(name, data=data).attrs["MATLAB_class"] = np.bytes_(cls)
        pid_set = group.create_dataset("PID", data=np.array([[ord(c)] for c in pid], np.uint16))
        pid_set.attrs["MATLAB_class"] = np.bytes_("char")
        pid_set.attrs["MATLAB_int_decode"] = np.int32(2)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 "
    header += b"HDF5 schema 1.00 ."
    with open(path, "r+b") as handle:
        handle.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


def test_figshare_mat_v73_transposes_back(tmp_path: Path) -> None:
    image = (np.arange(6 * 4).reshape(6, 4) * 100).astype(np.int16)  # not square on purpose
    mask = np.zeros((6, 4), dtype=np.uint8)
    mask[2:4, 1:3] = 1
    _matlab_v73(tmp_path / "17.mat", image, mask, label=2, pid="MR040237")
    record = read_figshare_mat(tmp_path / "17.mat")
    assert np.array_equal(record.image.array, image) and record.image.array.dtype == np.int16
    assert np.array_equal(record.mask, mask)
    assert (record.label, record.patient_id) == ("glioma", "MR040237")
    assert read_figshare_label(tmp_path / "17.mat") == ("glioma", "MR040237")
    assert np.array_equal(read_image(tmp_path / "17.mat").array, image)
    assert np.array_equal(read_mask(tmp_path / "17.mat", like=record.image), mask)


def test_figshare_mat_v5_and_bad_label(tmp_path: Path) -> None:
    image = np.arange(12, dtype=np.int16).reshape(3, 4)
    mask = np.eye(3, 4, dtype=np.uint8)
    scipy.io.savemat(
        tmp_path / "old.mat",
        {"cjdata": {"image": image, "tumorMask": mask, "label": 3.0, "PID": "112233"}},
    )
    record = read_figshare_mat(tmp_path / "old.mat")
    assert np.array_equal(record.image.array, image) and np.array_equal(record.mask, mask)
    assert (record.label, record.patient_id) == ("pituitary", "112233")
    _matlab_v73(tmp_path / "bad.mat", image, mask, label=7, pid="X")
    with pytest.raises(ImageReadError, match="label is 7"):
        read_figshare_mat(tmp_path / "bad.mat")
    scipy.io.savemat(tmp_path / "cvind.mat", {"cvind": np.arange(5)})
    with pytest.raises(ImageReadError, match="no cjdata"):
        read_image(tmp_path / "cvind.mat")


def test_write_png_round_trip_and_refusals(tmp_path: Path) -> None:
    grey16 = (np.arange(20 * 10).reshape(20, 10) * 300).astype(np.uint16)
    assert np.array_equal(read_image(write_png(grey16, tmp_path / "a.png")).array, grey16)
    rgb = np.random.default_rng(1).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    assert np.array_equal(read_image(write_png(rgb, tmp_path / "b.png")).array, rgb)
    # Encoded by OpenCV (BGR order inside): Pillow must read back the channels in RGB order.
    rgba = np.random.default_rng(2).integers(0, 256, (7, 6, 4), dtype=np.uint8)
    write_png(rgba, tmp_path / "c.png")
    with Image.open(tmp_path / "c.png") as image:
        assert image.mode == "RGBA"
        assert np.array_equal(np.asarray(image), rgba)
    grey = np.random.default_rng(3).integers(0, 256, (6, 11), dtype=np.uint8)
    assert np.array_equal(read_image(write_png(grey, tmp_path / "g.png")).array, grey)
    flags = np.zeros((5, 5), dtype=bool)
    flags[1, 1] = True
    assert read_image(write_png(flags, tmp_path / "m.png")).array[1, 1] == 255
    with pytest.raises(DataError, match="PNG needs"):
        write_png(np.zeros((4, 4), dtype=np.float32), tmp_path / "f.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.png",
        "b.png",
        "c.png",
        "g.png",
        "m.png",
    ]


def test_to_grey_and_to_rgb() -> None:
    rng = np.random.default_rng(2)
    colour = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    pillow = np.asarray(Image.fromarray(colour).convert("L"), dtype=np.int16)
    assert np.abs(to_grey(colour).astype(np.int16) - pillow).max() <= 1
    grey = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    assert np.array_equal(to_grey(to_rgb(grey)), grey)
    assert to_rgb(grey).shape == (6, 7, 3)
    assert to_rgb(np.dstack([colour, grey])).shape == (6, 7, 3)
    with pytest.raises(DataError):
        to_grey(np.zeros((2, 2, 2)))


def test_mask_conversions() -> None:
    assert set(np.unique(mask_to_labels(np.array([[0, 255]], np.uint8)))) == {0, 1}
    labels = mask_to_labels(np.array([[0, 1, 2, 4]], np.float32))
    assert labels.dtype == np.uint8 and labels.tolist() == [[0, 1, 2, 4]]
    jpeg_like = np.array([[0, 3, 120, 140, 250, 255] * 10], np.uint8)
    assert mask_to_labels(jpeg_like)[0, :6].tolist() == [0, 0, 0, 1, 1, 1]
    assert mask_to_labels(np.array([[0, 65535]], np.uint16)).tolist() == [[0, 1]]
    assert mask_to_labels(np.array([[0.2, 0.7]])).tolist() == [[0, 1]]


def test_coco_polygon_mask() -> None:
    square = {"segmentation": [[2, 1, 6, 1, 6, 4, 2, 4]], "image_id": 1}
    mask = coco_polygons_to_mask(square, height=8, width=10)
    assert mask.shape == (8, 10) and mask.dtype == np.uint8
    assert mask[2, 3] == 1 and mask[6, 8] == 0 and mask[2, 0] == 0
    assert 12 <= mask.sum() <= 20  # a 4x3 square, edges included by skimage's rule
    rle = {"segmentation": {"counts": [9, 3, 68], "size": [8, 10]}}
    decoded = coco_polygons_to_mask(rle, height=8, width=10)
    assert decoded[1:4, 1].tolist() == [1, 1, 1] and decoded.sum() == 3
    with pytest.raises(DataError, match="compressed RLE"):
        coco_polygons_to_mask({"segmentation": {"counts": "abc"}}, 8, 10)


def test_suffixes_and_is_image_file() -> None:
    assert ".nii.gz" in SUPPORTED_SUFFIXES
    assert is_image_file("a/B.JPG") and is_image_file("x.nii.gz") and is_image_file("s.dcm")
    assert not is_image_file("LICENSE") and not is_image_file("notes.txt")
    assert not is_image_file(".hidden.png")


# ---- bad inputs -------------------------------------------------------------------------------


def _corrupt_copies(shared_data: Path, tmp_path: Path) -> dict[str, Path]:
    jpeg = _first(shared_data / "sartaj-4class/Training/glioma_tumor")
    png = shared_data / "figshare-seg/images/1.png"
    nifti = shared_data / BRATS_CASE / "OTMultiClass.nii.gz"
    data = jpeg.read_bytes()
    out = {
        "truncated.jpg": data[: len(data) // 2],
        "tail-cut.jpg": data[:-2],
        "empty.png": b"",
        "random.png": np.random.default_rng(3).bytes(4096),
        "png-header-only.png": png.read_bytes()[:100],
        "truncated.nii.gz": nifti.read_bytes()[:5000],
        "garbage.dcm": b"\x00" * 128 + b"DICM" + b"\x07" * 50,
        "garbage.mat": b"MATLAB 5.0 MAT-file" + b"\x00" * 200,
        "garbage.tif": b"II*\x00" + b"\xff" * 40,
        "gzip-text.nii.gz": __import__("gzip").compress(b"hello"),
    }
    for name, content in out.items():
        (tmp_path / name).write_bytes(content)
    return {name: tmp_path / name for name in out}


def test_every_corrupt_input_raises_image_read_error(shared_data: Path, tmp_path: Path) -> None:
    for name, path in _corrupt_copies(shared_data, tmp_path).items():
        with pytest.raises(ImageReadError) as caught:
            read_image(path)
        assert caught.value.path == path, name
        assert "\n" not in str(caught.value) and str(path) in str(caught.value), name


def test_specific_problems_are_named(shared_data: Path, tmp_path: Path) -> None:
    files = _corrupt_copies(shared_data, tmp_path)
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(files["truncated.jpg"])
    with pytest.raises(ImageReadError, match="empty"):
        read_image(files["empty.png"])
    with pytest.raises(ImageReadError, match="unsupported or unrecognised"):
        read_image(files["random.png"])
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "missing.png")


def test_truncated_jpeg_fails_even_when_pillow_pads(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _corrupt_copies(shared_data, tmp_path)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(files["truncated.jpg"])


def test_nan_nifti_is_refused(tmp_path: Path) -> None:
    volume = np.ones((4, 4, 3), dtype=np.float32)
    volume[1, 2, 0] = np.nan
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(ImageReadError, match="NaN"):
        read_image(tmp_path / "nan.nii.gz")


def test_size_limits_and_decompression_bomb(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    png = tmp_path / "1.png"
    shutil.copy(shared_data / "figshare-seg/images/1.png", png)
    with pytest.raises(ImageReadError, match="byte limit"):
        read_image(png, max_bytes=100)
    with pytest.raises(ImageReadError, match=r"65536 pixels\), over"):
        read_image(png, max_pixels=1000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_image(png)


def test_mask_of_the_wrong_size_names_both_files(shared_data: Path, tmp_path: Path) -> None:
    image_path = tmp_path / "1.png"
    shutil.copy(shared_data / "figshare-seg/images/1.png", image_path)
    small = Image.open(shared_data / "figshare-seg/masks/1.png").resize((128, 128))
    small.save(tmp_path / "1_mask.png")
    image = read_image(image_path)
    with pytest.raises(DataError) as caught:
        read_mask(tmp_path / "1_mask.png", like=image)
    message = str(caught.value)
    assert "1_mask.png" in message and str(image_path) in message and "128x128" in message


def test_pydicom_reads_what_we_wrote(tmp_path: Path) -> None:
    # Guards the writer used above: the file is a real DICOM with preamble.
    _dicom_slice(tmp_path / "one.dcm", 3, z=1.0, number=1, series=generate_uid())
    assert (tmp_path / "one.dcm").read_bytes()[128:132] == b"DICM"
    assert pydicom.dcmread(tmp_path / "one.dcm").Rows == 4

"""Layout detection on the shared datasets and on small synthetic trees of the other layouts."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
from PIL import Image

from braintumor.data.layouts import (
    LAYOUT_NAMES,
    canonical_modality,
    detect_layout,
    normalise_class_name,
    normalise_split_name,
)
from braintumor.errors import LayoutError
from braintumor.io import read_image, read_mask


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")  # detection never decodes, so any bytes will do


# ---- shared data ------------------------------------------------------------------------------


def test_sartaj_class_folders_with_splits(shared_data: Path) -> None:
    start = time.perf_counter()
    layout = detect_layout(shared_data / "sartaj-4class")
    elapsed = time.perf_counter() - start
    assert (layout.name, layout.task) == ("class-folders", "classify")
    assert len(layout.samples) == 3264
    assert layout.classes == ["glioma", "meningioma", "no_tumor", "pituitary"]
    assert Counter(s.split for s in layout.samples) == {"train": 2870, "test": 394}
    assert Counter(s.label for s in layout.samples) == {
        "glioma": 926,
        "meningioma": 937,
        "no_tumor": 500,
        "pituitary": 901,
    }
    ids = [s.id for s in layout.samples]
    assert len(set(ids)) == len(ids)  # image(N).jpg repeats across classes; ids must not
    first = layout.samples[0]
    assert not first.id.startswith("/") and "\\" not in first.id
    assert Path(first.image) == layout.root / first.id
    assert elapsed < 5.0, f"listing 3264 files took {elapsed:.1f} s"


def test_navoneel_yes_no(shared_data: Path) -> None:
    layout = detect_layout(shared_data / "navoneel-binary")
    assert layout.name == "class-folders" and layout.classes == ["no_tumor", "tumor"]
    assert Counter(s.label for s in layout.samples) == {"tumor": 155, "no_tumor": 98}
    assert all(s.split is None for s in layout.samples)
    assert not any(s.id == "LICENSE" for s in layout.samples)


def test_figshare_seg_pairs_with_labels(shared_data: Path) -> None:
    layout = detect_layout(shared_data / "figshare-seg")
    assert (layout.name, layout.task) == ("image-mask", "segment")
    assert len(layout.samples) == 1226
    assert all(s.mask and Path(s.mask).name == Path(s.image).name for s in layout.samples)
    assert Counter(s.label for s in layout.samples) == {
        "glioma": 571,
        "meningioma": 284,
        "pituitary": 371,
    }
    assert layout.classes == ["glioma", "meningioma", "pituitary"]


def test_brats2013_cases(shared_data: Path) -> None:
    layout = detect_layout(shared_data / "brats2013-4cases")
    assert (layout.name, layout.task) == ("brats", "brats")
    assert [s.id for s in layout.samples] == [
        "brats_2013_pat0001_1",
        "brats_2013_pat0002_1",
        "brats_2013_pat0005_1",
        "brats_2013_pat0006_1",
    ]
    for sample in layout.samples:
        assert set(sample.modalities) == {"flair", "t1ce", "brainmask"}
        assert Path(sample.modalities["flair"]).name.startswith("Flair")
        assert Path(sample.mask).name == "OTMultiClass.nii.gz"
        assert sample.group == sample.id and Path(sample.image).is_dir()


# ---- synthetic trees --------------------------------------------------------------------------


def test_split_parents_and_class_synonyms(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "train/glioma/a.jpg",
        "train/notumor/b.PNG",
        "train/Glioma_Tumor/c.jpeg",
        "validation/glioma/d.jpg",
        "validation/notumor/e.jpg",
        "test/glioma/f.bmp",
        "test/notumor/readme.txt",
    )
    layout = detect_layout(tmp_path)
    assert layout.classes == ["glioma", "no_tumor"]
    by_id = {s.id: s for s in layout.samples}
    assert by_id["validation/glioma/d.jpg"].split == "val"
    assert by_id["train/Glioma_Tumor/c.jpeg"].label == "glioma"
    assert "test/notumor/readme.txt" not in by_id
    assert any("not images" in note for note in layout.notes)
    assert any("all mean class glioma" in note for note in layout.notes)


def test_plain_class_folders_inside_a_wrapper(tmp_path: Path) -> None:
    _touch(tmp_path, "archive/pituitary/1.jpg", "archive/meningioma/2.jpg", "README.md")
    layout = detect_layout(tmp_path)
    assert layout.root == tmp_path / "archive"
    assert layout.classes == ["meningioma", "pituitary"]
    assert [s.id for s in layout.samples] == ["meningioma/2.jpg", "pituitary/1.jpg"]
    assert any("only sub-folder archive/" in note for note in layout.notes)


def test_image_mask_under_splits_with_mask_suffix(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "train/images/1.png",
        "train/images/2.png",
        "train/masks/1_mask.png",
        "train/masks/2_mask.png",
        "test/images/3.png",
        "test/masks/9_mask.png",
    )
    layout = detect_layout(tmp_path)
    assert layout.name == "image-mask"
    by_id = {s.id: s for s in layout.samples}
    assert Path(by_id["train/images/2.png"].mask).name == "2_mask.png"
    assert by_id["test/images/3.png"].mask is None and by_id["test/images/3.png"].split == "test"
    assert any("1 images have no mask" in note for note in layout.notes)


def test_lgg_kaggle_3m(tmp_path: Path) -> None:
    patient = "TCGA_CS_4941_19960909"
    base = tmp_path / "kaggle_3m"
    for folder, n in ((patient, 10), (patient, 2), ("TCGA_DU_7010_19860307", 1)):
        (base / folder).mkdir(parents=True, exist_ok=True)
        stem = base / folder / f"{folder}_{n}"
        tifffile.imwrite(f"{stem}.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
        tifffile.imwrite(f"{stem}_mask.tif", np.zeros((8, 8), np.uint8))
    (base / "data.csv").write_text("Patient\n")
    layout = detect_layout(tmp_path)
    assert (layout.name, layout.task) == ("lgg-kaggle-3m", "segment")
    assert len(layout.samples) == 3
    ours = [s for s in layout.samples if s.group == patient]
    assert [Path(s.image).name for s in ours] == [f"{patient}_2.tif", f"{patient}_10.tif"]
    assert all(s.mask.endswith("_mask.tif") for s in layout.samples)
    assert {s.group for s in layout.samples} == {patient, "TCGA_DU_7010_19860307"}


def _figshare_mat(path: Path, label: int, pid: str) -> None:
    with h5py.File(path, "w", userblock_size=512) as handle:
        group = handle.create_group("cjdata")
        group.create_dataset("image", data=np.ones((4, 4), np.int16))
        group.create_dataset("tumorMask", data=np.eye(4, dtype=np.uint8))
        group.create_dataset("label", data=np.array([[float(label)]]))
        group.create_dataset("PID", data=np.array([[ord(c)] for c in pid], np.uint16))


def test_figshare_mat_folder(tmp_path: Path) -> None:
    (tmp_path / "part1").mkdir()
    _figshare_mat(tmp_path / "part1/1.mat", 1, "100360")
    _figshare_mat(tmp_path / "part1/2.mat", 1, "100360")
    _figshare_mat(tmp_path / "part1/3.mat", 3, "MR028")
    scipy.io.savemat(tmp_path / "cvind.mat", {"cvind": np.arange(3)})
    layout = detect_layout(tmp_path)
    assert (layout.name, layout.classes) == ("figshare-mat", ["meningioma", "pituitary"])
    assert [s.group for s in layout.samples] == ["100360", "100360", "MR028"]
    assert all(s.mask == s.image for s in layout.samples)
    assert any("cvind.mat" in note for note in layout.notes)


def test_coco_roboflow_splits_and_mask_reference(tmp_path: Path) -> None:
    for split, count in (("train", 2), ("valid", 1)):
        folder = tmp_path / split
        folder.mkdir()
        images, annotations = [], []
        for i in range(count):
            Image.fromarray(np.zeros((20, 30), np.uint8)).save(folder / f"{split}{i}.jpg")
            images.append({"id": i, "file_name": f"{split}{i}.jpg", "height": 20, "width": 30})
            annotations.append(
                {
                    "id": 10 + i,
                    "image_id": i,
                    "category_id": 1,
                    "segmentation": [[5, 5, 15, 5, 15, 12, 5, 12]],
                }
            )
        document = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": 0, "name": "tumors"}, {"id": 1, "name": "Tumor"}],
        }
        (folder / "_annotations.coco.json").write_text(json.dumps(document))
    layout = detect_layout(tmp_path)
    assert (layout.name, layout.task) == ("coco", "segment")
    assert Counter(s.split for s in layout.samples) == {"train": 2, "val": 1}
    assert layout.classes == ["tumor"]
    sample = next(s for s in layout.samples if s.id == "valid/valid0.jpg")
    assert sample.mask.startswith("coco:") and sample.mask.endswith("#0")
    mask = read_mask(sample.mask, like=read_image(sample.image))
    assert mask.shape == (20, 30) and mask[8, 10] == 1 and mask[0, 0] == 0


def test_brats_2021_and_2023_naming(tmp_path: Path) -> None:
    for case in ("BraTS2021_00000", "BraTS2021_00002"):
        _touch(
            tmp_path,
            *(
                f"Training/HGG/{case}/{case}_{m}.nii.gz"
                for m in ("flair", "t1", "t1ce", "t2", "seg")
            ),
        )
    _touch(
        tmp_path,
        *(
            f"Training/LGG/BraTS-GLI-00001-000/BraTS-GLI-00001-000-{m}.nii.gz"
            for m in ("t1n", "t1c", "t2w", "t2f")
        ),
    )
    layout = detect_layout(tmp_path)
    assert layout.name == "brats" and layout.classes == ["hgg", "lgg"]
    by_group = {s.group: s for s in layout.samples}
    for sample in layout.samples:
        assert set(sample.modalities) == {"t1", "t1ce", "t2", "flair"}
        assert sample.split == "train"
    assert by_group["BraTS2021_00002"].mask.endswith("_seg.nii.gz")
    assert by_group["BraTS-GLI-00001-000"].mask is None
    assert by_group["BraTS-GLI-00001-000"].modalities["flair"].endswith("-t2f.nii.gz")
    assert any("no label file" in note for note in layout.notes)


def test_nnunet_raw(tmp_path: Path) -> None:
    meta = {
        "channel_names": {"0": "FLAIR", "1": "T1w", "2": "T1gd", "3": "T2w"},
        "labels": {"background": 0, "edema": 1},
        "file_ending": ".nii.gz",
    }
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    _touch(
        tmp_path,
        *(f"imagesTr/BRATS_001_000{c}.nii.gz" for c in range(4)),
        "labelsTr/BRATS_001.nii.gz",
        *(f"imagesTs/BRATS_900_000{c}.nii.gz" for c in range(4)),
    )
    layout = detect_layout(tmp_path)
    assert (layout.name, layout.task) == ("nnunet-raw", "brats")
    train, test = layout.samples
    assert train.modalities["t1ce"].endswith("BRATS_001_0002.nii.gz")
    assert train.image.endswith("_0000.nii.gz") and train.mask.endswith("labelsTr/BRATS_001.nii.gz")
    assert (test.split, test.mask, test.group) == ("test", None, "BRATS_900")


def test_nothing_matches(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="empty folder; matched none of: class-folders"):
        detect_layout(tmp_path)
    _touch(tmp_path, "notes.txt", "one/file.jpg")
    with pytest.raises(LayoutError) as caught:
        detect_layout(tmp_path)
    assert all(name in str(caught.value) for name in LAYOUT_NAMES)
    with pytest.raises(LayoutError, match="does not exist"):
        detect_layout(tmp_path / "absent")


def test_name_normalisation() -> None:
    assert [
        normalise_class_name(n)
        for n in (
            "glioma_tumor",
            "Meningioma_Tumor",
            "no",
            "notumor",
            "Healthy",
            "yes",
            "Pituitary Tumour",
        )
    ] == ["glioma", "meningioma", "no_tumor", "no_tumor", "no_tumor", "tumor", "pituitary"]
    assert [
        normalise_split_name(n) for n in ("Training", "Testing", "validation", "valid", "misc")
    ] == ["train", "test", "val", "val", None]
    assert [canonical_modality(n) for n in ("FLAIR", "T1w", "t1gd", "T2w", "ADC")] == [
        "flair",
        "t1",
        "t1ce",
        "t2",
        "adc",
    ]

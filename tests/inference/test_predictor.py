"""Predictor (batched 2D inference, TTA, original-size maps) and input expansion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from braintumor.errors import DataError, ModelFormatError
from braintumor.inference.inputs import axial_slice, expand_inputs, is_volume, unique_stems
from braintumor.inference.predictor import Predictor
from braintumor.io import LoadedImage
from braintumor.models import build_model
from braintumor.models.folder import LoadedModel, ModelInfo
from model_support import loaded_2d

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


@pytest.fixture(scope="module")
def classifier() -> LoadedModel:
    torch.manual_seed(0)
    net = build_model("small-resnet", num_classes=4, in_channels=1, widths=(8, 8, 8, 8))
    return loaded_2d("classify", net, CLASSES)


@pytest.fixture(scope="module")
def segmenter() -> LoadedModel:
    torch.manual_seed(0)
    net = build_model("unet", num_classes=1, in_channels=1, channels=(4, 8), num_res_units=0)
    return loaded_2d("segment", net, ["background", "tumor"])


def _image(height: int, width: int, seed: int) -> LoadedImage:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, size=(height, width), dtype=np.uint8)
    array[height // 4 : height // 2, width // 3 : width // 2] = 250  # asymmetric bright blob
    return LoadedImage(array=array, path=Path(f"img{seed}.png"))


def _mirrored(image: LoadedImage) -> LoadedImage:
    return LoadedImage(array=np.ascontiguousarray(image.array[:, ::-1]), path=image.path)


def test_classify_probabilities_sum_to_one_and_batching_does_not_change_them(classifier):
    images = [_image(40 + 3 * i, 50, i) for i in range(5)]
    one_batch = Predictor(classifier, batch_size=16).classify(images)
    small_batches = Predictor(classifier, batch_size=2).classify(images)
    assert one_batch.shape == (5, 4)
    assert one_batch.dtype == np.float32
    np.testing.assert_allclose(one_batch.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(one_batch, small_batches, atol=1e-5)


def test_classify_tta_is_the_mean_over_the_mirror(classifier):
    images = [_image(48, 48, i) for i in range(3)]
    plain = Predictor(classifier)
    with_tta = Predictor(classifier, tta=True).classify(images)
    expected = 0.5 * (plain.classify(images) + plain.classify([_mirrored(i) for i in images]))
    assert with_tta.shape == (3, 4)
    np.testing.assert_allclose(with_tta, expected, atol=1e-5)
    # The mirror really changes the input: otherwise the check above proves nothing.
    assert not np.allclose(plain.classify(images), with_tta, atol=1e-6)


class _SingleLogit(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).unsqueeze(1) * 3.0


def test_single_logit_binary_model_gives_two_probabilities():
    loaded = loaded_2d("classify", _SingleLogit(), ["no_tumor", "tumor"])
    probs = Predictor(loaded).classify([_image(32, 32, 1), _image(32, 32, 2)])
    assert probs.shape == (2, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert (probs[:, 1] > 0.5).all()  # bright images -> positive mean logit


def test_wrong_number_of_classes_in_model_json_is_reported(classifier):
    info = ModelInfo(**{**classifier.info.__dict__, "class_names": ["a", "b", "c"]})
    bad = LoadedModel(model=classifier.model, info=info, path=Path("m"))
    with pytest.raises(ModelFormatError, match="3 classes"):
        Predictor(bad).classify([_image(32, 32, 0)])


def test_segment_returns_maps_at_the_original_size(segmenter):
    images = [_image(40, 64, 0), _image(70, 30, 1)]
    maps = Predictor(segmenter).segment(images)
    assert [m.shape for m in maps] == [(40, 64), (70, 30)]
    assert all(m.dtype == np.float32 and m.min() >= 0.0 and m.max() <= 1.0 for m in maps)


def test_segment_tta_flips_the_mirrored_map_back(segmenter):
    image = _image(48, 48, 3)
    plain = Predictor(segmenter)
    tta = Predictor(segmenter, tta=True).segment([image])[0]
    direct = plain.segment([image])[0]
    mirrored_back = plain.segment([_mirrored(image)])[0][:, ::-1]
    np.testing.assert_allclose(tta, 0.5 * (direct + mirrored_back), atol=1e-5)


def test_segment_with_brain_crop_pastes_the_map_into_the_box(segmenter):
    spec = {**segmenter.info.preprocessing, "brain_crop": True}
    info = ModelInfo(**{**segmenter.info.__dict__, "preprocessing": spec})
    cropped = LoadedModel(model=segmenter.model, info=info, path=Path("m"))
    array = np.zeros((80, 100), dtype=np.uint8)
    array[20:60, 30:80] = 200  # the "head"
    prob = Predictor(cropped).segment([LoadedImage(array=array, path=Path("x.png"))])[0]
    assert prob.shape == (80, 100)
    assert prob[:10].max() == 0.0 and prob[:, :20].max() == 0.0
    assert prob[25:55, 35:75].min() > 0.0


def test_task_mismatch_and_volumes_are_refused(classifier, segmenter):
    with pytest.raises(ModelFormatError, match="cannot segment"):
        Predictor(classifier).segment([_image(32, 32, 0)])
    volume = LoadedImage(array=np.zeros((20, 20, 9), np.float32), path=Path("v.nii"))
    with pytest.raises(DataError, match="slice"):
        Predictor(segmenter).prepare(volume)
    brats = LoadedModel(
        model=classifier.model,
        info=ModelInfo(**{**classifier.info.__dict__, "task": "brats3d"}),
        path=Path("m"),
    )
    with pytest.raises(ModelFormatError, match="not a 2D model"):
        Predictor(brats)


def test_axial_slice_of_a_nifti_volume():
    array = np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5)
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    volume = LoadedImage(
        array=array,
        path=Path("v.nii.gz"),
        spacing=(1.0, 2.0, 3.0),
        affine=affine,
        meta={"format": "nifti"},
    )
    assert is_volume(volume)
    plane, index = axial_slice(volume, "mid")
    assert index == 2
    assert plane.array.shape == (6, 4)  # rotated to display orientation
    np.testing.assert_array_equal(plane.array, np.rot90(array[:, :, 2]))
    assert plane.spacing == (2.0, 1.0)
    assert not is_volume(plane)
    assert axial_slice(volume, "4")[1] == 4
    with pytest.raises(DataError, match="outside"):
        axial_slice(volume, "5")
    with pytest.raises(DataError, match="mid"):
        axial_slice(volume, "middle")


def test_axial_axis_comes_from_the_affine():
    # Voxel axis 1 runs inferior-superior here (a coronal-stored volume).
    affine = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
    volume = LoadedImage(
        array=np.zeros((4, 7, 5), np.float32),
        path=Path("c.nii"),
        affine=affine,
        meta={"format": "nifti"},
    )
    plane, index = axial_slice(volume)
    assert index == 3 and plane.array.shape == (5, 4)


def test_colour_image_is_not_a_volume():
    rgb = LoadedImage(
        array=np.zeros((10, 10, 3), np.uint8), path=Path("a.jpg"), meta={"format": "jpeg"}
    )
    assert not is_volume(rgb)


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(path)
    return path


def test_expand_inputs_walks_folders_globs_and_series(tmp_path):
    a = _png(tmp_path / "scans" / "a.png")
    b = _png(tmp_path / "scans" / "sub" / "b.PNG")
    (tmp_path / "scans" / "notes.txt").write_text("not an image")
    series = tmp_path / "scans" / "series1"
    series.mkdir()
    for i in range(3):
        (series / f"{i}.dcm").write_bytes(b"\0" * 128 + b"DICM")
    lone = _png(tmp_path / "other" / "c.png")
    found = expand_inputs([str(tmp_path / "scans"), str(tmp_path / "other" / "*.png"), str(a)])
    assert found == sorted([a, b, series, lone], key=str)


def test_expand_inputs_keeps_named_files_and_refuses_nothing(tmp_path):
    missing = tmp_path / "missing.png"
    assert expand_inputs([str(missing)]) == [missing]  # reported when read, not dropped
    with pytest.raises(DataError, match="no image files"):
        expand_inputs([str(tmp_path / "*.jpg")])


def test_unique_stems_disambiguate_repeated_names():
    paths = [Path("glioma/image(1).jpg"), Path("no_tumor/image(1).jpg"), Path("x/y.nii.gz")]
    assert unique_stems(paths) == ["glioma_image(1)", "no_tumor_image(1)", "y"]

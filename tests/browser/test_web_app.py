"""The web page in a real headless Chromium: one run per task (classify, segment, BraTS volume
with the slice slider), each ending in a screenshot.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``scripts/install_browser.sh``)
and selenium; skipped with the reason where any is missing. Screenshots go to the folder named
by ``BRAINTUMOR_SCREENSHOTS`` (e.g. ``docs/img``), else to the test's temporary folder.
``BRAINTUMOR_WEB_DEMO`` may name trained models and inputs to show instead of the small
untrained ones, as JSON ``{"classify": [MODEL, IMAGE], "segment": [MODEL, IMAGE],
"brats": [MODEL, CASE_ZIP]}`` (how the documentation's pictures are made).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra (fastapi, uvicorn)")
pytest.importorskip("selenium", reason="needs selenium (test extra)")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DEMO = bool(os.environ.get("BRAINTUMOR_WEB_DEMO"))

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        f"browser test: {CHROMIUM} or {CHROMEDRIVER} is absent (run scripts/install_browser.sh)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for the helpers
from braintumor.serve.app import create_app  # noqa: E402
from brats_support import brats_model_and_zip  # noqa: E402
from dicom_support import write_series  # noqa: E402
from serve_support import CLASSES, LiveServer, make_model_dir, png_bytes  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Path]]:
    """Per task: (model argument for ``create_app``, input file)."""
    given = os.environ.get("BRAINTUMOR_WEB_DEMO")
    if given:
        return {task: (model, Path(path)) for task, (model, path) in json.loads(given).items()}
    root = tmp_path_factory.mktemp("web")
    classifier = make_model_dir(root / "sartaj-resnet18" / "model")
    segmenter = make_model_dir(root / "unet" / "model", "segment")
    image = root / "slice.png"
    image.write_bytes(png_bytes(180, 200))
    write_series(root / "dicom", n=1)
    brats, case = brats_model_and_zip(root)
    return {
        "classify": (str(classifier), image),
        "segment": (f"tumour-outliner={segmenter}", root / "dicom" / "IM0000"),
        "brats": (str(brats), case),
    }


@pytest.fixture(scope="module")
def server(demo):
    live = LiveServer(create_app([model for model, _ in demo.values()]))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("BRAINTUMOR_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser(tmp_path: Path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def _names(browser) -> list[str]:
    return [
        o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#model option")
    ]


def _open(browser, server, task: str) -> WebDriverWait:
    """Load the page and pick the model of ``task`` (the n-th served, in fixture order)."""
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 120)
    wait.until(lambda d: len(_names(d)) == 3)
    name = _names(browser)[["classify", "segment", "brats"].index(task)]
    Select(browser.find_element(By.ID, "model")).select_by_value(name)
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "card"), "intended use"))
    return wait


def _upload(browser, wait: WebDriverWait, path: Path) -> None:
    browser.find_element(By.ID, "file").send_keys(str(path))
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_element(By.ID, "status").text not in ("", "Analysing..."))
    assert browser.find_element(By.ID, "status").text == "Done."


def _loaded(browser, wait: WebDriverWait, element_id: str) -> list[int]:
    image = browser.find_element(By.ID, element_id)
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 0)
    return browser.execute_script(
        "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image
    )


def _shoot(browser, shots: Path, name: str) -> None:
    path = shots / f"web_{name}.png"
    assert browser.save_screenshot(str(path)) and path.stat().st_size > 10_000


def test_classify_shows_probabilities_original_and_gradcam(browser, server, demo, shots) -> None:
    wait = _open(browser, server, "classify")
    if not DEMO:  # named by run folder, by NAME=PATH, by run folder
        assert _names(browser) == ["sartaj-resnet18", "tumour-outliner", "brats-unet2d"]
    card = browser.find_element(By.ID, "card").text
    assert "training data" in card and "/tmp" not in card and "{" not in card
    _upload(browser, wait, demo["classify"][1])
    bars = browser.find_elements(By.CSS_SELECTOR, "#probabilities rect.bar")
    if not DEMO:
        assert [bar.get_attribute("data-class") for bar in bars] == CLASSES
        assert _loaded(browser, wait, "original") == _loaded(browser, wait, "overlay") == [200, 180]
    values = [v.text for v in browser.find_elements(By.CSS_SELECTOR, "#probabilities .value")]
    assert abs(sum(float(v.rstrip("%")) for v in values) - 100) < 0.5, values
    assert "Grad-CAM" in browser.find_element(By.ID, "overlay-caption").text
    assert browser.find_element(By.ID, "original-fig").is_displayed()
    _shoot(browser, shots, "classify")

    # A bad upload shows an error and the page (and server) carry on.
    bad = demo["classify"][1].with_name("notes.png")
    bad.write_text("not an image")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    browser.find_element(By.ID, "run").click()
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "Error"))
    assert "unsupported" in browser.find_element(By.ID, "status").text


def test_segment_dicom_shows_mm2_and_offers_a_dicom_seg(browser, server, demo, shots) -> None:
    wait = _open(browser, server, "segment")
    _upload(browser, wait, demo["segment"][1])
    facts = browser.find_element(By.ID, "facts").text
    dicom = demo["segment"][1].suffix.lower() in ("", ".dcm")
    assert ("mm²" in facts) if dicom else ("area" in facts)
    original, overlay = _loaded(browser, wait, "original"), _loaded(browser, wait, "overlay")
    assert original == overlay
    link = browser.find_element(By.ID, "mask-download")
    assert link.get_attribute("data-format") == ("dicom-seg" if dicom else "png")
    assert link.get_attribute("download").endswith("_seg.dcm" if dicom else "_mask.png")
    _shoot(browser, shots, "segment")


def test_brats_volume_has_a_slice_slider(browser, server, demo, shots) -> None:
    wait = _open(browser, server, "brats")
    _upload(browser, wait, demo["brats"][1])
    wait.until(lambda d: d.find_element(By.ID, "stack-fig").is_displayed())
    label = browser.find_element(By.ID, "slice-label")
    first = label.text
    assert first.startswith("slice ") and "tumour" in first
    slider = browser.find_element(By.ID, "slider")
    assert int(slider.get_attribute("max")) >= 10  # a stack through the brain, not 3 pictures
    start = int(slider.get_attribute("value"))
    slider.send_keys(Keys.ARROW_LEFT if start > 0 else Keys.ARROW_RIGHT)
    wait.until(lambda d: d.find_element(By.ID, "slice-label").text != first)
    slider.send_keys(Keys.ARROW_RIGHT if start > 0 else Keys.ARROW_LEFT)
    wait.until(lambda d: d.find_element(By.ID, "slice-label").text == first)
    assert browser.find_element(By.ID, "mask-download").get_attribute("data-format") == "nifti"
    assert "WT" in browser.find_element(By.ID, "facts").text
    _shoot(browser, shots, "brats")


def test_out_of_distribution_upload_shows_the_badge(browser, tmp_path: Path) -> None:
    from braintumor.atomic import write_text_atomic
    from braintumor.data.layouts import detect_layout
    from braintumor.data.synthetic import write_synthetic_dataset
    from braintumor.inference.ood_fit import calibrate_model_dir
    from braintumor.models.folder import read_model_info

    folder = make_model_dir(tmp_path / "classifier")
    samples = detect_layout(write_synthetic_dataset(tmp_path / "ph", "classify", n=8)).samples
    calibrate_model_dir(folder, samples[::2], samples[1::2])
    # Every input is beyond a threshold below any distance: the red badge must show.
    info = read_model_info(folder)
    info.ood["thresholds"]["mahalanobis"] = info.ood["threshold"] = -1.0
    write_text_atomic(folder / "model.json", info.to_json())
    image = tmp_path / "slice.png"
    image.write_bytes(png_bytes(120, 120))
    server = LiveServer(create_app([folder]))
    try:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 90)
        wait.until(
            expected_conditions.text_to_be_present_in_element((By.ID, "card"), "mahalanobis")
        )
        browser.find_element(By.ID, "file").send_keys(str(image))
        browser.find_element(By.ID, "run").click()
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "Done"))
        badge = browser.find_element(By.ID, "ood-badge")
        assert badge.is_displayed()
        assert badge.get_attribute("data-ood") == "true"
        assert "Unusual input" in badge.text
        assert "threshold -1.000" in badge.get_attribute("title")
    finally:
        server.stop()

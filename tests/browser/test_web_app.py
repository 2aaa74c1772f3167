"""The web page in a real headless Chromium: upload an image, see probabilities and overlay.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``scripts/install_browser.sh``)
and selenium; skipped with the reason where any is missing. The screenshot is written to
``tests/artifacts/web_app.png``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra (fastapi, uvicorn)")
pytest.importorskip("selenium", reason="needs selenium (test extra)")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        f"browser test: {CHROMIUM} or {CHROMEDRIVER} is absent (run scripts/install_browser.sh)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for serve_support
from braintumor.serve.app import create_app  # noqa: E402
from serve_support import CLASSES, LiveServer, make_model_dir, png_bytes  # noqa: E402


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


def test_upload_shows_probabilities_and_overlay(browser, tmp_path: Path) -> None:
    models = [make_model_dir(tmp_path / "classifier"), make_model_dir(tmp_path / "seg", "segment")]
    image = tmp_path / "slice.png"
    image.write_bytes(png_bytes(180, 200))
    server = LiveServer(create_app(models))
    try:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 90)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 2)
        Select(browser.find_element(By.ID, "model")).select_by_value("classifier")
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "card"), "resnet18"))
        browser.find_element(By.ID, "file").send_keys(str(image))
        browser.find_element(By.ID, "run").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#probabilities rect.bar"))
        bars = browser.find_elements(By.CSS_SELECTOR, "#probabilities rect.bar")
        assert [bar.get_attribute("data-class") for bar in bars] == CLASSES
        values = [v.text for v in browser.find_elements(By.CSS_SELECTOR, "#probabilities .value")]
        total = sum(float(v.rstrip("%")) for v in values)
        assert abs(total - 100) < 0.5, values
        # The overlay has loaded as a real picture of the uploaded image's size.
        overlay = browser.find_element(By.ID, "overlay")
        wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", overlay) > 0)
        size = browser.execute_script(
            "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", overlay
        )
        assert size == [200, 180]
        assert "Grad-CAM" in browser.find_element(By.ID, "overlay-caption").text
        assert browser.find_element(By.ID, "status").text == "Done."
        assert browser.find_elements(By.CSS_SELECTOR, "#downloads a[download$='.json']")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "web_app.png"))

        # A bad upload shows an error and the page (and server) carry on.
        bad = tmp_path / "notes.png"
        bad.write_text("not an image")
        browser.find_element(By.ID, "file").send_keys(str(bad))
        browser.find_element(By.ID, "run").click()
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "Error"))
        assert "unsupported" in browser.find_element(By.ID, "status").text
    finally:
        server.stop()


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

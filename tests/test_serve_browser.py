"""The live page in a real browser: `vae serve` in a subprocess, driven by headless Chromium through selenium.

Chromium and chromedriver are Debian's (``apt-get install chromium
chromium-driver``; ``make test`` installs them, through .ci/setup-system.sh), selenium comes with the dev
extra; selenium is pointed at both binaries, so it never downloads a browser.
Missing any of them is a failure that says how to get them, never a skip.
"""
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from numpy_vae.config import TrainConfig
from numpy_vae.serve.run_view import SAMPLES_PER_DIGIT
from numpy_vae.training import train

ROOT = Path(__file__).resolve().parent.parent
HOW_TO_GET_IT = ("run `make test` or .ci/setup-system.sh, which install them, or: apt-get install chromium "
                 "chromium-driver (Debian), and pip install selenium (`make test` installs it with the dev extra)")
WAIT = 30


def _executable(candidates) -> str | None:
    """The first of ``candidates`` (names on $PATH or paths) that is an executable file."""
    for name in candidates:
        path = shutil.which(name) if name and os.sep not in name else name
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def browser_binaries() -> tuple[str, str]:
    """(chromium, chromedriver) paths: $CHROMIUM / $CHROMEDRIVER, else Debian's; pytest.fail saying how to get them."""
    chromium = _executable([os.environ.get("CHROMIUM"), "chromium", "chromium-browser"])
    driver = _executable([os.environ.get("CHROMEDRIVER"), "chromedriver", "/usr/lib/chromium/chromedriver"])
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path]
    if missing:
        pytest.fail(f"the browser test needs {' and '.join(missing)}: {HOW_TO_GET_IT}", pytrace=False)
    return chromium, driver


def start_chromium(window: str = "1280,1000"):
    """A headless Chromium driven by selenium, on Debian's binaries (Selenium Manager is never asked)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"the browser test needs selenium: {HOW_TO_GET_IT}", pytrace=False)
    chromium, driver = browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={window}", "--no-first-run", "--disable-extensions", "--hide-scrollbars"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def start_serve(run_dir: Path, data_dir: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`vae serve RUN_DIR --port 0` in a subprocess; (process, the URL it printed)."""
    env = {**os.environ, "VAE_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "numpy_vae.cli", "serve", str(run_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=open(log_path, "w"), text=True, env=env, cwd=ROOT)
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    if not match:
        proc.kill()
        pytest.fail(f"`vae serve` printed {line!r} instead of its URL; stderr: {log_path.read_text()}")
    return proc, match[1]


def wait_for(driver, script: str, what: str, timeout: float = WAIT):
    """Poll the JavaScript expression ``script`` until it is truthy; its value, or a failure naming ``what``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what} ({script})")


@pytest.fixture(scope="module")
def run_2d(real_mnist_dir, tmp_path_factory) -> Path:
    """A small trained run with a 2-D latent (500 images, 2 epochs, 784-32-2) and its curves figure."""
    from numpy_vae.report import write_report
    config = TrainConfig(epochs=2, train_limit=500, hidden=(32,), latent=2, data_dir=str(real_mnist_dir),
                         runs_dir=str(tmp_path_factory.mktemp("browser_runs")), name="browser")
    run = train(config, progress=False, log=lambda *a: None)
    write_report(run, progress=False, log=lambda *a: None, only={"curves"})
    return run


@pytest.fixture(scope="module")
def url(run_2d, real_mnist_dir, tmp_path_factory):
    proc, address = start_serve(run_2d, real_mnist_dir, tmp_path_factory.mktemp("serve_log") / "stderr")
    yield address
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, url):
    """The page, loaded, with its first poll answered."""
    browser.get(url)
    wait_for(browser, "document.body.dataset.state === 'ready'", "the page's first poll")
    return browser


def image_size(driver, element_id: str) -> list[int]:
    return driver.execute_script(f"const i = document.getElementById('{element_id}'); "
                                 f"return [i.naturalWidth, i.naturalHeight];")


def test_the_curves_load_with_the_tables_and_pictures(page, run_2d):
    wait_for(page, "document.getElementById('curves-section').dataset.epochs === '2'", "the curves of 2 epochs")
    inked = page.execute_script("""
        const c = document.getElementById('curve-loss'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i] < 200) n++; return n;""")
    assert inked > 200                                                     # lines, dots and labels were drawn
    assert "finished: 2 of 2 epochs" in page.find_element("id", "status").text
    assert page.find_element("id", "run-name").text == run_2d.name
    wait_for(page, "document.getElementById('samples').naturalWidth > 0", "the prior samples")
    assert image_size(page, "reconstructions") == [289, 115] and image_size(page, "samples") == [289, 115]
    config = page.find_element("id", "config-table").text
    assert "latent 2" in config and "hidden 32" in config
    assert len(page.find_elements("css selector", "#metrics-table tbody tr")) == 2
    wait_for(page, "[...document.querySelectorAll('#figures img')].some(i => i.naturalWidth > 0)", "curves.png")
    csp = [e["message"] for e in page.get_log("browser") if "Content Security Policy" in e["message"]]
    assert not csp, csp


def test_generate_digit_3_shows_test_digits_and_samples(page):
    from selenium.webdriver.support.ui import Select
    Select(page.find_element("id", "digit")).select_by_value("3")
    count = page.find_element("id", "count")
    count.clear()
    count.send_keys("5")
    page.find_element("id", "generate").click()
    wait_for(page, "document.getElementById('generated').dataset.digit === '3' && "
                   "!document.getElementById('generated').dataset.loading", "the generated digits 3")
    assert image_size(page, "generated") == [28 + 3 + 29 * SAMPLES_PER_DIGIT - 1, 5 * 29 - 1]
    assert page.find_element("id", "generate-figure").is_displayed()
    assert "5 test digits 3" in page.find_element("id", "generate-caption").text
    before = page.execute_script("return document.getElementById('generated').src")
    page.find_element("id", "redraw").click()                             # another draw: another picture
    wait_for(page, f"document.getElementById('generated').src !== '{before}'", "a new draw")


def test_a_click_on_the_latent_map_decodes_that_point(page):
    from selenium.webdriver.common.action_chains import ActionChains
    wait_for(page, "document.getElementById('latent-map').dataset.points === '2000'", "the latent map")
    canvas = page.find_element("id", "latent-map")
    seen = []
    for dx, dy in ((-60, 40), (70, -50)):
        ActionChains(page).move_to_element_with_offset(canvas, dx, dy).click().perform()
        z = wait_for(page, f"(document.getElementById('decoded').dataset.z || '') !== '{seen[-1] if seen else ''}' "
                           f"&& document.getElementById('decoded').dataset.z", "the decoded digit")
        seen.append(z)
        assert image_size(page, "decoded") == [28, 28]
        x, y = map(float, z.split(","))
        assert page.find_element("id", "decoded-z").text == f"z = ({x:.2f}, {y:.2f})"
    (x1, y1), (x2, y2) = (map(float, z.split(",")) for z in seen)
    assert x2 > x1 and y2 > y1                       # right and up on the canvas: larger z_1 and z_2


def test_a_huge_count_is_refused_on_the_page_with_the_servers_words(page):
    page.execute_script("document.getElementById('count').value = '1000';")
    page.find_element("id", "generate").click()
    text = wait_for(page, "document.getElementById('generate-error').textContent", "the error message")
    assert "count must be an integer from 1 to 64" in text and "too long" in text
    assert not page.find_element("id", "generate-figure").is_displayed()


@pytest.mark.parametrize("path, status, words", [
    ("api/generate?digit=12", 400, "digit must be an integer from 0 to 9, got '12'"),
    ("api/generate?digit=3&count=100000", 400, "count must be an integer from 1 to 64"),
    ("api/decode?x=0&y=99", 400, "y must be a number from -10 to 10"),
    ("files/..%2fconfig.json", 403, "only files directly inside the run folder are served"),
    ("files/last.npz", 404, "not served"),
    ("no/such/page", 404, "no such page"),
])
def test_bad_requests_in_the_browser_get_a_clear_json_error(browser, url, path, status, words):
    browser.get(url + path)
    body = json.loads(browser.find_element("tag name", "body").text)
    assert body["status"] == status and words in body["error"]


@pytest.mark.parametrize("path", ["/files/../config.json", "/files/%2e%2e/%2e%2e/etc/passwd", "/files/%2Fetc%2Fpasswd"])
def test_traversal_as_sent_raw_is_refused(url, path):
    """A browser normalizes '..' away before sending; a raw client does not."""
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 403 and "only files directly inside the run folder" in body["error"]


def test_a_page_opened_before_the_first_epoch_waits_then_fills_in(browser, run_2d, real_mnist_dir):
    """`vae train --serve`: the page is up before the run folder exists, and picks the run up by polling."""
    from numpy_vae.serve import LiveServer, RunView
    view = RunView(None, data_dir=real_mnist_dir)
    server = LiveServer(view, port=0)
    server.start_in_thread()
    try:
        browser.get(server.url)
        wait_for(browser, "document.body.dataset.state === 'pending'", "the waiting page")
        assert "waiting for the run" in browser.find_element("id", "status").text
        view.attach(run_2d)                                                # what the first epoch's hook does
        wait_for(browser, "document.getElementById('curves-section').dataset.epochs === '2'", "the run's curves")
        assert browser.find_element("id", "run-name").text == run_2d.name
    finally:
        server.stop()

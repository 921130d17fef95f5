"""Wake on request in a real browser: headless Chromium, driven by Selenium, against the front
door of `python -m start_engines.local` (its own emulator, on the real clock, in a subprocess).

The page must turn into the engine's own answer by its own refresh alone. `make test`
installs chromium and chromium-driver from Debian's packages; the test skips only where they
(or selenium) are missing, and names what.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.local_process import ROOT, LocalAws, local_aws

if TYPE_CHECKING:
    from collections.abc import Iterator

ARTIFACTS = ROOT / ".artifacts"
AWAKE_SECONDS = 30.0  # the page refreshes every 5 s; pdf is healthy after about 3


def _missing() -> list[str]:
    gone = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if importlib.util.find_spec("selenium") is None:
        gone.append("selenium (pip install -e '.[dev]')")
    return gone


MISSING = _missing()
pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"no browser: {', '.join(MISSING)} missing (make test installs chromium and"
    " chromium-driver from Debian's packages where it can)",
)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalAws]:
    """pdf asleep behind the front door of a `python -m start_engines.local` of its own; it
    comes up while the browser starts."""
    args = ("--start-seconds", "1", "--health-seconds", "2", "--wakeable", "pdf")
    with local_aws(tmp_path, *args) as running:
        yield running


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager never downloads anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1024,768")
    service = Service(executable_path=str(shutil.which("chromedriver")))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_waiting_page_turns_into_the_engine_by_its_own_refresh(
    local: LocalAws, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url = f"{local.url}/api/pdf/report"
    browser.get(url)
    assert "pdf" in browser.title
    assert "starting" in browser.find_element(By.ID, "state").text
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "wake-page.png"))

    # no refresh, no navigation from here: the page's own Refresh brings the engine
    WebDriverWait(browser, AWAKE_SECONDS, poll_frequency=0.25).until(
        lambda driver: '"taskId"' in driver.page_source
    )
    answer = json.loads(browser.find_element(By.TAG_NAME, "body").text)
    assert answer["engine"] == "pdf"
    assert answer["taskId"]
    assert answer["path"] == "/api/pdf/report"
    assert browser.current_url == url

"""An exported page in headless Chromium: a static server on 127.0.0.1 and a Selenium driver
that generates with the page and reads back its text and chars/s (tests and benchmarks)."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FIELDS = ("temperature", "top_k", "top_p", "length", "seed")  # the form's number boxes
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--window-size=1000,900",
)


def missing() -> str | None:
    """Why the page cannot be driven here (None: it can)."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "no chromium and chromedriver here (CI installs them: .ci/run)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'lstmgen[test]')"
    return None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
    }

    def log_message(self, *args) -> None:
        pass


@contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """Serve folder on 127.0.0.1 (a free port) while the block runs; yield its URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def page(folder: Path) -> Iterator[Page]:
    """The exported page at folder, open in headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    with static_server(folder) as url:
        browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            browser.get(url)
            yield Page(browser)
        finally:
            browser.quit()


class Page:
    """The form and output of an exported page."""

    def __init__(self, browser, timeout_s: float = 60):
        from selenium.webdriver.support.ui import WebDriverWait

        self.browser = browser
        self.wait = WebDriverWait(browser, timeout_s)
        self.wait.until(lambda b: self.state in ("ready", "error"))
        if self.state == "error":
            raise RuntimeError(f"the page did not load: {self.element('status').text}")

    @property
    def state(self) -> str:
        return self.browser.execute_script("return document.body.dataset.state")

    def element(self, name: str):
        from selenium.webdriver.common.by import By

        return self.browser.find_element(By.ID, name)

    def generate(self, prime: str = "", *, condition: dict[int, str] | None = None, **fields):
        """Fill the form (prime, temperature, top_k, top_p, length, seed; condition: column
        number → value number), generate; return (text, chars/s) when done."""
        from selenium.webdriver.support.ui import Select

        fill = "arguments[0].value = arguments[1]"
        self.browser.execute_script(fill, self.element("prime"), prime)
        for name in FIELDS:  # a field not given is emptied: the page's default
            value = fields.pop(name, None)
            shown = "" if value is None else str(value)
            self.browser.execute_script(fill, self.element(name), shown)
        if fields:
            raise TypeError(f"the page has no fields {sorted(fields)}")
        for k, value in (condition or {}).items():
            Select(self.element(f"condition-{k}")).select_by_value(str(value))
        self.element("generate").click()
        self.wait.until(lambda b: self.state in ("done", "error"))
        if self.state == "error":
            raise RuntimeError(f"the page failed: {self.element('status').text}")
        text = self.browser.execute_script(
            "return document.getElementById('generated').textContent"
        )
        rate = self.browser.execute_script("return document.body.dataset.charsPerSecond")
        return text, float(rate or 0)

    def screenshot(self, path: Path) -> None:
        self.browser.save_screenshot(str(path))

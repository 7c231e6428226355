"""Screenshot of `lstmgen serve`'s page generating from a run, for the README.

    python tools/page_screenshot.py runs/demo docs/serve-page.png [--prime "The "]

Starts `lstmgen serve RUN` on a free loopback port, drives headless Chromium (Debian's
chromium and chromium-driver) with Selenium: types the prime, clicks Generate, waits for
the text, saves the picture, stops the server.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("out")
    parser.add_argument("--prime", default="The ")
    parser.add_argument("--length", default="400")
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "lstmgen", "serve", args.run, "--port", str(port)]
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
            options.add_argument(flag)
        options.add_argument("--window-size=1000,820")
        browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            browser.get(url + "/")
            wait = WebDriverWait(browser, 60)
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model option"))
            browser.find_element(By.ID, "prime").send_keys(args.prime)
            length = browser.find_element(By.ID, "max_tokens")
            length.clear()
            length.send_keys(args.length)
            browser.find_element(By.ID, "generate").click()
            wait.until(lambda b: "chars/s" in b.find_element(By.ID, "status").text)
            wait.until(lambda b: not b.find_element(By.ID, "stop").is_enabled())
            browser.save_screenshot(args.out)
        finally:
            browser.quit()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    print(args.out)


if __name__ == "__main__":
    main()

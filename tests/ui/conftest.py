"""Browser-test plumbing shared by tests/ui: the studio on a free port with tiny weights, and a page."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "_artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_studio(home: Path, log_path: Path, start_timeout_s: float = 60) -> Iterator[tuple[str, float]]:
    """`python app.py --weights tiny` on a free port with `home` as its data folder, logging to `log_path`;
    yields (url, seconds it took to answer) and stops it afterwards."""
    port = _free_port()
    env = {**os.environ, "NAVA_STUDIO_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "app.py", "--weights", "tiny", "--port", str(port)], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        try:
            while True:
                try:
                    urllib.request.urlopen(url, timeout=2)
                    break
                except OSError:
                    if proc.poll() is not None or time.perf_counter() - t0 > start_timeout_s:
                        raise AssertionError(log_path.read_text()[-3000:])
                    time.sleep(0.25)
            yield url, time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(30)


@pytest.fixture
def studio(tmp_path):
    with running_studio(tmp_path / "home", tmp_path / "studio.log") as started:
        yield started


@contextmanager
def studio_page(url: str, height: int = 1800) -> Iterator:
    """A headless Chromium page on the studio, once the page has built (the Render button exists)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height})
            page.goto(url, wait_until="load")
            page.wait_for_selector("#render-btn", timeout=60_000)
            yield page
        finally:
            browser.close()

"""Browser tests of the dashboard: a real `urbanstack serve`, Debian's Chromium via Playwright."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = os.environ.get("URBANSTACK_TEST_CHROMIUM", "/usr/bin/chromium")
RESULTS = Path(__file__).resolve().parents[2] / "test-results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Platform:
    """`urbanstack serve` on a free 127.0.0.1 port with a fresh SQLite store, plus a client."""

    def __init__(self, store: Path, port: int | None = None, **settings: str) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "URBANSTACK_STORE": f"sqlite:///{store}",
            "URBANSTACK_SQLITE_SYNCHRONOUS": "NORMAL",
        }
        env |= {f"URBANSTACK_{name.upper()}": value for name, value in settings.items()}
        command = [sys.executable, "-m", "urbanstack.cli", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*command, "--log-level", "warning"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise RuntimeError(f"urbanstack serve exited: {out}")
            try:
                if self.http.get("/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("urbanstack serve did not become healthy")

    def upsert(self, entities: list[dict[str, Any]]) -> None:
        reply = self.http.post("/ngsi-ld/v1/entityOperations/upsert", json=entities)
        assert reply.status_code in (201, 204), reply.text

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    srv = Platform(tmp_path / "city.db")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium per test worker (Debian's, not a Playwright download)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[test]'", pytrace=False)
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def expected_page_errors() -> list[str]:
    """Substrings of console errors a test expects (the page fixture lets them pass)."""
    return []


@pytest.fixture
def page(
    browser: Any, request: pytest.FixtureRequest, expected_page_errors: list[str]
) -> Iterator[Any]:
    """A fresh page (own storage) that fails the test on any JavaScript error; a screenshot
    of it is saved in test-results/ when the test ends."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="vi-VN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield page
        unexpected = [e for e in errors if not any(x in e for x in expected_page_errors)]
        assert not unexpected, f"errors in the page: {unexpected}"
    finally:
        RESULTS.mkdir(exist_ok=True)
        name = request.node.name.replace("/", "_").replace("[", "_").replace("]", "")
        try:
            page.screenshot(path=str(RESULTS / f"dashboard-{name}.png"))
        finally:
            context.close()


def open_dashboard(page: Any, url: str) -> None:
    """Load the dashboard and wait until every entity is drawn."""
    page.goto(url + "/")
    page.wait_for_function(
        "window.__dashboard && (window.__dashboard.ready || window.__dashboard.error)",
        timeout=20_000,
    )
    assert page.evaluate("window.__dashboard.error") is None

"""A real headless browser for tests that look at a page as a person would: Debian's Chromium, driven
over the Chrome DevTools Protocol (a websocket on a port Chromium picks itself).

`--dump-dom` and `--screenshot` on the command line stop at the first quiet moment of the page's
virtual time; an app that draws what arrives over its own websocket (Streamlit) is still a skeleton
then. Driving the page instead lets a test wait until what it expects is drawn.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

CHROMIUM = "chromium"  # Debian's package of that name (clickrec_platform/stack/setup.py installs it)


class Page:
    """One tab, driven over its DevTools websocket."""

    def __init__(self, socket: ClientConnection):
        self._socket = socket
        self._ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a DevTools method and return its result (events that arrive meanwhile are dropped)."""
        call_id = next(self._ids)
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=60))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable values only)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def wait_for(self, expression: str, done: Callable[[Any], bool], timeout_s: float, interval_s: float = 0.5
                 ) -> Any:
        """Evaluate ``expression`` until ``done(value)``; returns the last value, done or not (timed out)."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if done(value) or time.monotonic() > deadline:
                return value
            time.sleep(interval_s)

    def resize(self, width: int, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


def chromium_available() -> bool:
    return shutil.which(CHROMIUM) is not None


@contextmanager
def headless_chromium(width: int = 1400, height: int = 900, timeout_s: float = 30.0) -> Iterator[Page]:
    """A headless Chromium of its own (fresh profile, stopped afterwards) and its first tab."""
    if not chromium_available():
        raise RuntimeError(f"`{CHROMIUM}` is not installed: `clickrec setup` (as root) installs Debian's package")
    with tempfile.TemporaryDirectory(prefix="clickrec-chromium-") as profile:
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}",
                f"--window-size={width},{height}", "about:blank"]
        browser = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            port = _devtools_port(Path(profile), browser, timeout_s)
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            tab = next(t for t in targets if t.get("type") == "page")
            with connect(tab["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout_s) as socket:
                page = Page(socket)
                page.resize(width, height)
                yield page
        finally:
            _stop(browser)


def _stop(browser: subprocess.Popen) -> None:
    """Chromium's renderers and helpers run in the session it was started in: signal the whole group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(browser.pid, sig)
        except ProcessLookupError:
            break
        try:
            browser.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue


def _devtools_port(profile: Path, browser: subprocess.Popen, timeout_s: float) -> int:
    """Chromium writes the port it chose to <profile>/DevToolsActivePort once it listens."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if browser.poll() is not None:
            raise RuntimeError(f"{CHROMIUM} exited with code {browser.returncode} before it listened")
        lines = marker.read_text().splitlines() if marker.is_file() else []
        if lines and lines[0].isdigit():
            return int(lines[0])
        time.sleep(0.1)
    raise RuntimeError(f"{CHROMIUM} did not open its DevTools port within {timeout_s:.0f}s")

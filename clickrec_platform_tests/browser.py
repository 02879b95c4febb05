"""A real headless browser for tests that look at a page as a person would: Playwright driving Debian's
Chromium (`executable_path`, so none of Playwright's browser downloads is needed).

`--dump-dom` and `--screenshot` on the command line stop at the first quiet moment of the page's
virtual time; an app that draws what arrives over its own websocket (Streamlit) is still a skeleton
then. Driving the page instead lets a test wait until what it expects is drawn.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from playwright.sync_api import Page, sync_playwright

CHROMIUM = "chromium"  # Debian's package of that name (clickrec_platform/stack/setup.py installs it)


@contextmanager
def headless_chromium(width: int = 1400, height: int = 900) -> Iterator[Page]:
    """A headless Chromium of its own (fresh profile, closed afterwards) and a page of the given size."""
    executable = shutil.which(CHROMIUM)
    if executable is None:
        raise RuntimeError(f"`{CHROMIUM}` is not installed: `clickrec setup` (as root) installs Debian's package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                              "--hide-scrollbars"])
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def wait_for(page: Page, expression: str, done: Callable[[Any], bool], timeout_s: float, interval_s: float = 0.5
             ) -> Any:
    """Evaluate ``expression`` in the page until ``done(value)`` (a Python predicate, which Playwright's own
    `wait_for_function` cannot take); returns the last value, done or not (timed out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(expression)
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)

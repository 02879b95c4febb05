"""How the platform's long-running processes stop: SIGTERM or SIGINT asks them to stop cleanly (set an event
their loop watches) instead of killing them mid-batch."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` while the block runs (main thread only), then the handlers are restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def process_stop_event() -> threading.Event:
    """For a service's ``main``: INFO logs (time, logger, level) on stderr, and an event that SIGTERM and
    SIGINT set for the rest of the process's life."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    for sig in SIGNALS:
        signal.signal(sig, lambda *_: stop.set())
    return stop

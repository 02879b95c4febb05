"""The session champion inside each API worker: loaded from MLflow, reloaded when its alias moves.

Why in the worker and not precomputed in Postgres: a session model answers for a *sequence* of
items (V-SKNN weighs each item by its position, STAN by its time), and the visitor's session is
only known at request time, seconds old. Precomputing would mean one list per possible session,
or falling back to per-item lists summed, which is item-kNN again, the thing issue #18 replaced.
Held in memory the model answers one session in about a millisecond (measured by
`clickrec bench api`), and answers are cached per (model version, session) since the same
visitor asks again and again between two clicks.

A background task asks MLflow every `api_session_model_refresh_seconds` which version the
`session-champion` alias points at and loads a new one off the event loop; requests keep the
previous model until the swap. With no champion, or MLflow unreachable, the worker serves
without it (the live part of the blend is then the recent items' similar items, as before).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from clickrec_platform.serving.api.blend import Provenance

if TYPE_CHECKING:  # refresh() imports it only when it loads a model
    from clickrec_platform.recommend.session.tracking import LoadedSessionModel

log = logging.getLogger("clickrec.api.session")

CACHE_SIZE = 20_000  # sessions remembered per worker (a list of ~30 ints each)


def current_session(items: Sequence[int], seen_ms: Sequence[int], gap_minutes: float) -> tuple[list[int], list[int]]:
    """The visitor's latest session from their recent items (newest first, one row per item at its
    last view): the newest items back to the first idle gap longer than `gap_minutes`, returned
    oldest first, as session models take them."""
    gap_ms = gap_minutes * 60_000
    end = 0
    for end in range(1, len(items) + 1):
        if end == len(items) or seen_ms[end - 1] - seen_ms[end] > gap_ms:
            break
    return list(items[:end])[::-1], list(seen_ms[:end])[::-1]


class SessionModelHolder:
    """The worker's session champion (or none) and a bounded cache of its answers."""

    def __init__(self, registered_model: str, tracking_uri: str, refresh_seconds: float) -> None:
        self.registered_model = registered_model
        self.tracking_uri = tracking_uri
        self.refresh_seconds = refresh_seconds
        self.loaded: LoadedSessionModel | None = None
        self.provenance: Provenance | None = None
        self._cache: OrderedDict[tuple, list[int]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.refresh_seconds > 0

    def recommend(self, items: Sequence[int], timestamps: Sequence[int], k: int) -> list[int] | None:
        """Item ids the session champion puts next after this session (possibly fewer than k), or
        None when the worker holds no session model."""
        loaded = self.loaded
        if loaded is None or not items:
            return None
        key = (loaded.version, tuple(items), tuple(timestamps), k)
        found = self._cache.get(key)
        if found is None:
            found = [item for item, _ in loaded.servable.recommend_ids(items, timestamps, k)]
            self._cache[key] = found
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return found

    def refresh(self) -> bool:
        """Load the version behind the alias if it is not the one held; True when it changed.
        Blocking (MLflow calls): run it in a thread."""
        from clickrec_platform.recommend.session.tracking import aliased_session_version, load_session_model

        found = aliased_session_version(self.registered_model, tracking_uri=self.tracking_uri)
        if found is None:
            changed, self.loaded, self.provenance = self.loaded is not None, None, None
            return changed
        if self.loaded is not None and self.loaded.version == found[0]:
            return False
        loaded = load_session_model(self.registered_model, tracking_uri=self.tracking_uri)
        if loaded is None:
            return False
        self.loaded, self.provenance = loaded, Provenance(f"session:{loaded.name}", loaded.version, loaded.run_id)
        self._cache.clear()
        log.info("session champion %s v%s loaded (%s)", loaded.name, loaded.version, self.registered_model)
        return True

    async def refresh_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:  # MLflow down or a bad artifact: keep serving what we hold
                log.warning("session model refresh failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.refresh_seconds)

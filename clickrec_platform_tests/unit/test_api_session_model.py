"""The API's session part without a server: the current session cut from the recent items, and the
worker's holder (answers in item ids, cached per model version and session)."""

from __future__ import annotations

import numpy as np

from clickrec_platform.recommend.session.protocol import Sessions
from clickrec_platform.recommend.session.rules import SequentialRules
from clickrec_platform.recommend.session.tracking import LoadedSessionModel
from clickrec_platform.recommend.session.training import SessionServable
from clickrec_platform.serving.api.session_model import SessionModelHolder, current_session

MIN = 60_000


def test_the_current_session_runs_back_from_the_newest_item_to_the_first_long_gap():
    items, seen = [5, 4, 3, 2, 1], [100 * MIN, 90 * MIN, 70 * MIN, 30 * MIN, 29 * MIN]  # newest first
    assert current_session(items, seen, gap_minutes=30) == ([3, 4, 5], [70 * MIN, 90 * MIN, 100 * MIN])
    assert current_session(items, seen, gap_minutes=45) == ([1, 2, 3, 4, 5], seen[::-1])
    assert current_session([7], [0], 30) == ([7], [0])
    assert current_session([], [], 30) == ([], [])


def _loaded(servable: SessionServable, version: str) -> LoadedSessionModel:
    return LoadedSessionModel(servable, "sr", version, "run")


def test_the_holder_answers_in_item_ids_and_caches_per_version_and_session(monkeypatch):
    # Item indices 0..2 are ids 100, 200, 300; sequential rules: after 0 comes 1, after 1 comes 2.
    model = SequentialRules(steps=1).fit(Sessions.from_lists([[0, 1, 2], [0, 1, 2]]))
    servable = SessionServable(model, np.array([100, 200, 300]))
    holder = SessionModelHolder("unused", "unused", refresh_seconds=30)
    assert holder.recommend([100], [0], 5) is None  # nothing loaded: the caller falls back

    holder.loaded = _loaded(servable, "1")
    assert holder.recommend([100], [0], 5) == [200]
    assert holder.recommend([100, 200], [0, 1], 5) == [300]
    calls = []

    def recommend_ids(*args) -> list[tuple[int, float]]:
        calls.append(args)
        return [(999, 1.0)]

    monkeypatch.setattr(servable, "recommend_ids", recommend_ids)
    assert holder.recommend([100], [0], 5) == [200] and not calls  # cached
    holder.loaded = _loaded(servable, "2")
    assert holder.recommend([100], [0], 5) == [999] and calls  # a new version is asked afresh

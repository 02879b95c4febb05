"""`SessionData` as a table (`gold.sessions`) and back, and the checks that table must pass.

One row per kept event: session_key, position (in the session, from 0: equal times keep their
order), visitor_id, ts (epoch ms), item_id, split (train /
validation / test), evaluated (the row is part of the split's evaluated sessions: every train
row; validation rows whose item train knows, in sessions still >= 2 long; every test row, as the
protocol already dropped what train + validation does not know), and the protocol's two split
times, so that `session_data_from_frame(sessions_frame(data))` is `data` again.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pandas as pd

from clickrec_platform.lake.quality import Verdict
from clickrec_platform.recommend.session.protocol import SessionData, SessionProtocol, Sessions

COLUMNS = ("session_key", "position", "visitor_id", "ts", "item_id", "split", "evaluated", "test_from_ms",
           "validation_from_ms")


def sessions_frame(data: SessionData) -> pd.DataFrame:
    """Every kept event of train, validation (whole) and test, in (split, session, time) order."""
    evaluated_validation = data.validation.to_frame(data.item_ids)
    parts = []
    for split, sessions, evaluated in (
        ("train", data.train, None),
        ("validation", data.validation_full, evaluated_validation),
        ("test", data.test, None),
    ):
        frame = sessions.to_frame(data.item_ids).drop(columns="item_index")
        frame.insert(1, "position", np.arange(len(frame)) - np.repeat(sessions.offsets[:-1], sessions.lengths))
        if evaluated is None:
            frame["evaluated"] = True
        else:
            # Evaluated validation sessions are whole sessions less the items train does not know.
            kept = set(evaluated["session_key"].tolist())
            known = np.zeros(data.n_items, dtype=bool)
            known[data.train.items] = True
            frame["evaluated"] = frame["session_key"].isin(kept).to_numpy() & known[sessions.items]
        frame.insert(4, "split", split)
        parts.append(frame)
    out = pd.concat(parts, ignore_index=True)
    out["test_from_ms"] = np.int64(data.test_from_ms)
    out["validation_from_ms"] = np.int64(data.validation_from_ms)
    return out[list(COLUMNS)]


def session_data_from_frame(frame: pd.DataFrame, protocol: SessionProtocol | None = None) -> SessionData:
    """The `SessionData` a `sessions_frame` was written from (the protocol as recorded by the caller)."""
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"sessions table lacks column(s) {sorted(missing)}")
    frame = frame.sort_values(["session_key", "position"], kind="stable", ignore_index=True)
    split = frame["split"].to_numpy(dtype=object)
    item_ids = np.unique(frame["item_id"].to_numpy(dtype=np.int64)[split != "test"])
    evaluated = frame["evaluated"].to_numpy(dtype=bool)

    def collect(rows: np.ndarray) -> Sessions:
        part = frame.loc[rows]
        session = part["session_key"].to_numpy(dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]]) if len(session) else np.zeros(0, int)
        return Sessions(
            items=np.searchsorted(item_ids, part["item_id"].to_numpy(dtype=np.int64)).astype(np.int64),
            timestamps=part["ts"].to_numpy(dtype=np.int64),
            offsets=np.r_[starts, len(session)].astype(np.int64),
            visitor_ids=part["visitor_id"].to_numpy(dtype=np.int64)[starts],
            session_keys=session[starts],
            n_items=len(item_ids),
        )

    first = frame.iloc[0] if len(frame) else None
    return SessionData(
        protocol=protocol or SessionProtocol(),
        item_ids=item_ids,
        train=collect(split == "train"),
        validation=collect((split == "validation") & evaluated),
        test=collect(split == "test"),
        validation_full=collect(split == "validation"),
        test_from_ms=int(first["test_from_ms"]) if first is not None else 0,
        validation_from_ms=int(first["validation_from_ms"]) if first is not None else 0,
    )


def session_counts(data: SessionData) -> tuple[bool, dict[str, int]]:
    """Whether every split has sessions to learn from or to evaluate, and the counts."""
    summary = data.summary()
    passed = summary["train_sessions"] > 0 and summary["test_sessions"] > 0 and (
        data.protocol.validation_days == 0 or summary["validation_sessions"] > 0)
    return passed, summary


def unknown_items(frame: pd.DataFrame) -> dict[str, int]:
    """Evaluated rows of a sessions table whose item the model predicting them cannot know: test
    items outside train + validation, evaluated validation items outside train (both must be 0)."""
    split, item = frame["split"].to_numpy(dtype=object), frame["item_id"].to_numpy(dtype=np.int64)
    evaluated = frame["evaluated"].to_numpy(dtype=bool)
    known_to_training = np.unique(item[split != "test"])
    known_to_train = np.unique(item[split == "train"])
    return {
        "test_items_unknown_to_training": int((~np.isin(item[split == "test"], known_to_training)).sum()),
        "validation_items_unknown_to_train": int(
            (~np.isin(item[(split == "validation") & evaluated], known_to_train)).sum()),
    }


def protocol_fields(protocol: SessionProtocol) -> dict[str, str]:
    """The protocol as run metadata/parameters."""
    return {f"protocol_{field.name}": str(getattr(protocol, field.name)) for field in fields(protocol)}


def judge_sessions(frame: pd.DataFrame, protocol: SessionProtocol) -> list[Verdict]:
    """The sessions table's checks: every split holds sessions, and no evaluated item is unknown to what
    predicts it."""
    passed, counts = session_counts(session_data_from_frame(frame, protocol))
    unknown = unknown_items(frame)
    return [Verdict("session_counts", passed, counts),
            Verdict("no_unknown_test_items", not any(unknown.values()), unknown)]

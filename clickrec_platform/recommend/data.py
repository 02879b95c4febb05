"""Interactions as the models see them: a users x items matrix with id maps, and held-out truth.

Input is `gold.training_splits` (one row per visitor x item x split). Index spaces come from the
training splits only, because that is all a model may know: visitors seen only later are
cold-start, and items seen only later stay in the truth, unreachable, rather than being dropped,
so scores are not flattered by forgetting what no model could have recommended.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from clickrec_platform.events.contract import INTERACTION_WEIGHTS

SPLITS: tuple[str, ...] = ("train", "validation", "test")
# What this module reads from `gold.training_splits`; split_start / split_end are used when present.
REQUIRED_COLUMNS: tuple[str, ...] = ("visitor_id", "item_id", "split", "weight", "first_ts", "last_ts")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)

_NS_PER_DAY = 86_400 * 10**9
_truths_lock = threading.RLock()  # held while a truth is built, so threads scoring side by side build it once


def splits_from_events(
    events: pd.DataFrame | Iterable[pd.DataFrame],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> pd.DataFrame:
    """A `gold.training_splits`-shaped frame from contract-shaped events.

    The split is chronological by event count (the first 70% of interaction events by time
    are train, ...), as `recommenders`' chrono split is, so no model peeks at the future.
    Searches name no item and are ignored. Accepts one frame or an iterable of frames (as
    `generate_events` yields) so that only the columns needed are ever held at once.
    """
    _require(len(fractions) == len(SPLITS), f"fractions must give one share per split {SPLITS}")
    _require(
        all(f > 0 for f in fractions) and abs(sum(fractions) - 1) < 1e-9, "fractions must be > 0 and sum to 1"
    )
    frames = [events] if isinstance(events, pd.DataFrame) else events
    interactions = pd.concat([_interaction_events(frame) for frame in frames], ignore_index=True)
    _require(len(interactions) >= len(SPLITS), "need at least one interaction event per split")

    sorted_ts = np.sort(interactions["ts"].to_numpy())
    positions = np.array(split_cut_positions(fractions, len(sorted_ts)), dtype=np.int64)
    bounds = np.r_[sorted_ts[0], sorted_ts[positions], sorted_ts[-1] + 1]  # each split is [start, end)
    split_code = np.searchsorted(bounds[1:-1], interactions["ts"].to_numpy(), side="right")
    interactions["split_code"] = split_code.astype(np.int8)

    grouped = interactions.groupby(["visitor_id", "item_id", "split_code"], sort=True)
    out = grouped.agg(
        weight=("weight", "sum"),
        events=("weight", "size"),
        transactions=("is_transaction", "sum"),
        first_ts=("ts", "min"),
        last_ts=("ts", "max"),
    ).reset_index()
    codes = out.pop("split_code").to_numpy()
    out.insert(2, "split", np.asarray(SPLITS, dtype=object)[codes])
    out["weight"] = out["weight"].astype(np.float64)
    out["events"] = out["events"].astype(np.int64)
    out["transactions"] = out["transactions"].astype(np.int64)
    for column in ("first_ts", "last_ts"):
        out[column] = pd.to_datetime(out[column], unit="ms", utc=True)
    edges = pd.to_datetime(bounds, unit="ms", utc=True)
    out["split_start"] = edges[:-1][codes]
    out["split_end"] = edges[1:][codes]
    return out


def split_cut_positions(fractions: Sequence[float], n_events: int) -> list[int]:
    """0-based positions, in the time-sorted events, of the first validation and first test event.

    The cut at share q is the ceil(q * n)-th smallest event time, the definition Spark's
    `percentile_approx` (features/splits.py) computes, so both splits agree event for event
    (`test_feature_functions` runs them over the same events); a cut's ties go to the later split.
    """
    first, second = fractions[0], fractions[0] + fractions[1]
    return [max(math.ceil(q * n_events) - 1, 0) for q in (first, second)]


def _interaction_events(frame: pd.DataFrame) -> pd.DataFrame:
    kind = frame["event"].astype(object).to_numpy()
    weight = pd.Series(kind).map(dict(INTERACTION_WEIGHTS)).to_numpy()
    keep = ~np.isnan(weight) & frame["item_id"].notna().to_numpy()
    return pd.DataFrame(
        {
            "ts": frame["ts"].to_numpy(dtype=np.int64)[keep],
            "visitor_id": frame["visitor_id"].to_numpy(dtype=np.int64)[keep],
            "item_id": frame["item_id"].to_numpy(dtype=np.int64, na_value=-1)[keep],
            "weight": weight[keep].astype(np.float32),
            "is_transaction": (kind[keep] == "transaction"),
        }
    )


@dataclass(frozen=True)
class GroundTruth:
    """What each evaluated visitor went on to interact with in one held-out split.

    `relevant` has a column per catalogue item and, after those, one per item that appears only
    in held-out data: such items count against recall but no model can recommend them.
    """

    split: str
    visitor_ids: np.ndarray  # int64, one per evaluated visitor
    user_index: np.ndarray  # row in the training matrix, -1 for cold-start visitors
    relevant: sp.csr_matrix  # bool, visitors x (catalogue items + items unseen in training)
    n_catalogue_items: int

    def __len__(self) -> int:
        return len(self.visitor_ids)

    @property
    def is_cold(self) -> np.ndarray:
        return self.user_index < 0

    @property
    def n_relevant(self) -> np.ndarray:
        return np.diff(self.relevant.indptr)

    @property
    def unreachable_share(self) -> float:
        """Share of relevant (visitor, item) pairs whose item no model could know."""
        total = self.relevant.nnz
        return float((self.relevant.indices >= self.n_catalogue_items).sum() / total) if total else 0.0

    def subset(self, rows: np.ndarray) -> GroundTruth:
        return GroundTruth(
            split=self.split,
            visitor_ids=self.visitor_ids[rows],
            user_index=self.user_index[rows],
            relevant=self.relevant[rows],
            n_catalogue_items=self.n_catalogue_items,
        )

    def without_items_seen_in(self, user_items: sp.csr_matrix) -> GroundTruth:
        """Drop items a visitor already had in training, and visitors left with nothing.

        Models are asked for items new to the visitor (`exclude_seen`), so a re-visit of a known
        item is something no model was allowed to recommend; counting it would only lower every
        model's score alike and blur the comparison.
        """
        warm = np.flatnonzero(~self.is_cold)
        seen = user_items[self.user_index[warm]]
        width = self.relevant.shape[1]
        seen_keys = np.repeat(warm, np.diff(seen.indptr)) * width + seen.indices
        pairs = self.relevant.tocoo()
        new = ~np.isin(pairs.row.astype(np.int64) * width + pairs.col, seen_keys)
        remaining = sp.csr_matrix(
            (pairs.data[new], (pairs.row[new], pairs.col[new])), shape=self.relevant.shape, dtype=bool
        )
        kept = np.flatnonzero(np.diff(remaining.indptr) > 0)
        return GroundTruth(
            split=self.split,
            visitor_ids=self.visitor_ids[kept],
            user_index=self.user_index[kept],
            relevant=remaining[kept],
            n_catalogue_items=self.n_catalogue_items,
        )


@dataclass(frozen=True)
class InteractionData:
    """The training matrix, its id maps, and the held-out splits to evaluate against.

    `user_items` is users x items (implicit >= 0.5 orientation), float32 confidence weights.
    """

    user_items: sp.csr_matrix
    user_ids: np.ndarray  # sorted int64 visitor ids; position = row
    item_ids: np.ndarray  # sorted int64 item ids; position = column
    interactions: pd.DataFrame  # training pairs: user_index, item_index, weight (undecayed), last_ts_ns
    held_out: pd.DataFrame  # non-training rows: visitor_id, item_id, split, weight
    train_splits: tuple[str, ...]
    split_bounds: dict[str, tuple[pd.Timestamp, pd.Timestamp]]
    half_life_days: float | None = None
    item_categories: np.ndarray | None = None  # category per item column, -1 where unknown
    # Truths already built (every model of a training is scored against the same ones).
    _truths: dict[tuple[str, float | None, bool], GroundTruth] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_splits(
        cls,
        splits: pd.DataFrame,
        *,
        train_splits: Sequence[str] = ("train",),
        half_life_days: float | None = None,
        reference_time: pd.Timestamp | None = None,
        items: pd.DataFrame | None = None,
    ) -> InteractionData:
        """Build from a `gold.training_splits` frame.

        `half_life_days` turns on exponential time decay: an interaction `half_life_days` older
        than `reference_time` (default: the end of training) counts half. `items` (item_id,
        category_id) widens the catalogue to items nobody touched yet and records categories.
        """
        missing = set(REQUIRED_COLUMNS) - set(splits.columns)
        _require(not missing, f"training splits lack column(s) {sorted(missing)}")
        train_splits = tuple(train_splits)
        unknown = set(train_splits) - set(SPLITS)
        _require(not unknown, f"unknown training split(s) {sorted(unknown)}")
        in_train = splits["split"].isin(train_splits).to_numpy()
        train = splits.loc[in_train]
        _require(len(train) > 0, f"no rows in training split(s) {train_splits}")

        user_ids = np.unique(train["visitor_id"].to_numpy(dtype=np.int64))
        catalogue = train["item_id"].to_numpy(dtype=np.int64)
        if items is not None:
            catalogue = np.r_[catalogue, items["item_id"].to_numpy(dtype=np.int64)]
        item_ids = np.unique(catalogue)

        # A visitor x item pair can appear in several training splits (train + validation).
        pairs = pd.DataFrame(
            {
                "user_index": np.searchsorted(user_ids, train["visitor_id"].to_numpy(dtype=np.int64)),
                "item_index": np.searchsorted(item_ids, train["item_id"].to_numpy(dtype=np.int64)),
                "weight": train["weight"].to_numpy(dtype=np.float64),
                "last_ts_ns": _utc_ns(train["last_ts"]),
            }
        )
        if len(train_splits) > 1:
            pairs = pairs.groupby(["user_index", "item_index"], sort=False, as_index=False).agg(
                weight=("weight", "sum"), last_ts_ns=("last_ts_ns", "max")
            )
        bounds = _split_bounds(splits)
        weights = pairs["weight"].to_numpy()
        if half_life_days is not None:
            _require(half_life_days > 0, "half_life_days must be > 0")
            reference = _training_end(bounds, train_splits) if reference_time is None else reference_time
            reference_ns = _utc_ns(pd.Series([reference]))[0]
            age_days = (reference_ns - pairs["last_ts_ns"].to_numpy()) / _NS_PER_DAY
            weights = weights * 0.5 ** (np.maximum(age_days, 0.0) / half_life_days)
        user_items = sp.csr_matrix(
            (weights.astype(np.float32), (pairs["user_index"].to_numpy(), pairs["item_index"].to_numpy())),
            shape=(len(user_ids), len(item_ids)),
            dtype=np.float32,
        )
        user_items.sum_duplicates()
        user_items.sort_indices()

        held = splits.loc[~in_train, ["visitor_id", "item_id", "split", "weight"]].reset_index(drop=True)
        return cls(
            user_items=user_items,
            user_ids=user_ids,
            item_ids=item_ids,
            interactions=pairs.reset_index(drop=True),
            held_out=held,
            train_splits=train_splits,
            split_bounds=bounds,
            half_life_days=half_life_days,
            item_categories=_categories(items, item_ids) if items is not None else None,
        )

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def train_end(self) -> pd.Timestamp:
        return _training_end(self.split_bounds, self.train_splits)

    def user_index(self, visitor_ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """Training rows of these visitors, -1 for visitors unseen in training."""
        return lookup_index(self.user_ids, visitor_ids)

    def item_index(self, item_ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """Catalogue columns of these items, -1 for items outside the catalogue."""
        return lookup_index(self.item_ids, item_ids)

    def ground_truth(self, split: str = "validation", min_weight: float | None = None) -> GroundTruth:
        """Per visitor, the items they interacted with in `split` (any interaction by default;
        with `min_weight`, only those whose summed weight reaches it, e.g. 3 for add-to-cart)."""
        _require(split not in self.train_splits, f"split {split!r} is part of training")
        rows = self.held_out[self.held_out["split"] == split]
        if min_weight is not None:
            rows = rows[rows["weight"] >= min_weight]
        visitors, visitor_row = np.unique(rows["visitor_id"].to_numpy(dtype=np.int64), return_inverse=True)
        items = rows["item_id"].to_numpy(dtype=np.int64)
        column = self.item_index(items)
        unknown = column < 0
        unseen_items, unseen_position = np.unique(items[unknown], return_inverse=True)
        column[unknown] = self.n_items + unseen_position
        relevant = sp.csr_matrix(
            (np.ones(len(rows), dtype=bool), (visitor_row, column)),
            shape=(len(visitors), self.n_items + len(unseen_items)),
        )
        relevant.sum_duplicates()
        relevant.sort_indices()
        return GroundTruth(
            split=split,
            visitor_ids=visitors,
            user_index=self.user_index(visitors),
            relevant=relevant,
            n_catalogue_items=self.n_items,
        )

    def evaluation_truth(
        self, split: str = "validation", min_weight: float | None = None, new_items_only: bool = True
    ) -> GroundTruth:
        """`ground_truth(split, min_weight)`, with `new_items_only` less the items each visitor had in
        training (`without_items_seen_in`): what an evaluation scores against. Built once per data
        and kept, as every model of a training is scored against the same truth."""
        key = (split, min_weight, new_items_only)
        with _truths_lock:
            if key not in self._truths:
                if new_items_only:
                    full = self.evaluation_truth(split, min_weight, new_items_only=False)
                    self._truths[key] = full.without_items_seen_in(self.user_items)
                else:
                    self._truths[key] = self.ground_truth(split, min_weight)
            return self._truths[key]

    def split_dates(self) -> dict[str, str]:
        """Each split's [start, end) as ISO strings, for run metadata."""
        out = {}
        for name, (start, end) in self.split_bounds.items():
            out[f"{name}_start"] = start.isoformat()
            out[f"{name}_end"] = end.isoformat()
        return out


def lookup_index(sorted_ids: np.ndarray, ids: np.ndarray | Sequence[int]) -> np.ndarray:
    """Positions of `ids` in the sorted array `sorted_ids`, -1 where absent."""
    ids = np.asarray(ids, dtype=np.int64)
    position = np.searchsorted(sorted_ids, ids)
    inside = position < len(sorted_ids)
    found = np.zeros(len(ids), dtype=bool)
    found[inside] = sorted_ids[position[inside]] == ids[inside]
    return np.where(found, position, -1)


def _utc_ns(values: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch, for tz-aware UTC and naive (taken as UTC) timestamps alike."""
    stamps = pd.to_datetime(values)
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _as_utc(value: object) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _split_bounds(splits: pd.DataFrame) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    """Each split's [start, end); from its interactions when the bound columns are absent."""
    grouped = splits.groupby("split", observed=True)
    if {"split_start", "split_end"} <= set(splits.columns):
        starts, ends = grouped["split_start"].min(), grouped["split_end"].max()
    else:
        starts, ends = grouped["first_ts"].min(), grouped["last_ts"].max()
    return {name: (_as_utc(starts[name]), _as_utc(ends[name])) for name in SPLITS if name in starts.index}


def _training_end(
    bounds: dict[str, tuple[pd.Timestamp, pd.Timestamp]], train_splits: Sequence[str]
) -> pd.Timestamp:
    return max(bounds[name][1] for name in train_splits if name in bounds)


def _categories(items: pd.DataFrame, item_ids: np.ndarray) -> np.ndarray:
    categories = np.full(len(item_ids), -1, dtype=np.int64)
    known = items.dropna(subset=["category_id"]).drop_duplicates("item_id", keep="last")
    categories[np.searchsorted(item_ids, known["item_id"].to_numpy(dtype=np.int64))] = known[
        "category_id"
    ].to_numpy(dtype=np.int64)
    return categories


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)

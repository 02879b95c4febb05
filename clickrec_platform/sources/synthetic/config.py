"""What the synthetic generator makes: one frozen, validated configuration."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class Promotion:
    """A sale that multiplies traffic for a few hours; hours past the window have no effect."""

    day: int  # day of the window, 0 being `GeneratorConfig.start_date`
    start_hour: int  # UTC
    hours: int
    multiplier: float = 20.0

    def __post_init__(self) -> None:
        _require(self.day >= 0, "promotion day must be >= 0")
        _require(0 <= self.start_hour < 24, "promotion start_hour must be in 0..23")
        _require(self.hours >= 1, "promotion hours must be >= 1")
        _require(self.multiplier > 0, "promotion multiplier must be > 0")


@dataclass(frozen=True)
class GeneratorConfig:
    """A synthetic world and its traffic. The same config always yields the same output.

    Defaults follow RetailRocket's shape: its funnel (97% views, 2.5% add-to-carts, 0.8%
    transactions) and its start, a Monday in May 2015.
    """

    seed: int = 42
    events: int = 1_000_000  # approximate: sessions and the funnel are random
    start_date: date = date(2015, 5, 4)
    days: int = 14
    visitors: int | None = None  # None: one per 10 events, so tastes show in each history
    items: int | None = None  # None: one per 20 events
    root_categories: int = 12
    category_levels: int = 3  # roots included; items sit in the deepest level
    children_per_category: tuple[int, int] = (2, 5)  # inclusive range, drawn per category
    brands: int = 400
    tastes_per_visitor: int = 3
    taste_strength: float = 0.8  # share of a visitor's views drawn from their planted tastes
    item_popularity_exponent: float = 0.9  # Zipf exponent over item popularity ranks
    views_per_session: float = 4.0  # mean of a geometric distribution
    addtocart_per_view: float = 0.026
    transaction_per_addtocart: float = 0.32
    like_per_view: float = 0.005
    search_per_session: float = 0.02
    promotions: tuple[Promotion, ...] = (Promotion(day=2, start_hour=12, hours=4),)
    chunk_events: int = 1_000_000  # about how many events are in memory at once

    def __post_init__(self) -> None:
        for name in ("events", "days", "root_categories", "category_levels", "brands", "tastes_per_visitor"):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1")
        for name in ("visitors", "items"):
            _require(getattr(self, name) is None or getattr(self, name) >= 1, f"{name} must be >= 1")
        low, high = self.children_per_category
        _require(1 <= low <= high, "children_per_category must be a range (low, high) with 1 <= low <= high")
        for name in (
            "taste_strength",
            "addtocart_per_view",
            "transaction_per_addtocart",
            "like_per_view",
            "search_per_session",
        ):
            _require(0.0 <= getattr(self, name) <= 1.0, f"{name} must be a probability")
        _require(self.views_per_session >= 1.0, "views_per_session must be >= 1")
        _require(self.item_popularity_exponent >= 0, "item_popularity_exponent must be >= 0")
        _require(self.chunk_events >= 100, "chunk_events must be >= 100")

    @property
    def n_visitors(self) -> int:
        return self.visitors or max(100, self.events // 10)

    @property
    def n_items(self) -> int:
        return self.items or max(200, self.events // 20)

    @property
    def events_per_session(self) -> float:
        """Expected events in one session: its views, their funnel and likes, maybe a search."""
        per_view = 1 + self.addtocart_per_view * (1 + self.transaction_per_addtocart) + self.like_per_view
        return self.views_per_session * per_view + self.search_per_session

    @property
    def n_sessions(self) -> int:
        return max(1, round(self.events / self.events_per_session))

    @property
    def sessions_per_chunk(self) -> int:
        return max(1, round(self.chunk_events / self.events_per_session))

    @property
    def start_ms(self) -> int:
        midnight = datetime(self.start_date.year, self.start_date.month, self.start_date.day, tzinfo=UTC)
        return int(midnight.timestamp()) * 1000

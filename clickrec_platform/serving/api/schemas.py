"""Response shapes, for the OpenAPI document at /docs (handlers write JSON with orjson directly)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Shape(BaseModel):
    """A response body: exactly these keys (the document says so, and the tests hold answers to it)."""

    model_config = ConfigDict(extra="forbid")


class Error(Shape):
    detail: str = Field(description="What went wrong, for a person to read.")


class ParameterError(Shape):
    parameter: str | None = Field(description="The parameter's name.")
    location: str | None = Field(alias="in", description="Where it was: query or path.")
    message: str | None


class InvalidRequest(Shape):
    detail: str = Field(description="Each invalid parameter and why, for a person to read.")
    errors: list[ParameterError] = Field(default=[], description="The same, one entry per parameter.")


class RecommendedItem(Shape):
    item_id: int
    score: float = Field(description="Fused score (reciprocal ranks); 0 for fallback items.")
    source: str = Field(description="model, session, model+session, trending or popular.")


class Recommendations(Shape):
    user_id: int
    source: str = Field(description="What produced the list: blended (model and session), model, session, "
                                    "or for visitors without either, trending or popular.")
    model_name: str | None
    model_version: str | None = Field(description="Registry version of the model behind the list, if any.")
    run_id: str | None = Field(description="MLflow run of that model.")
    session_model_name: str | None = Field(None, description="The session champion whose next-item list was "
                                                             "blended in (null when none was used).")
    session_model_version: str | None = Field(None, description="Its registry version.")
    based_on_recent_items: list[int] = Field(description="The visitor's most recent items used (newest first).")
    items: list[RecommendedItem]


class SimilarItem(Shape):
    similar_item_id: int
    rank: int
    score: float | None
    model_name: str | None
    model_version: str | None
    run_id: str | None


class SimilarItems(Shape):
    item_id: int
    items: list[SimilarItem]


class TrendingItem(Shape):
    item_id: int
    score: float
    events: int


class Trending(Shape):
    window: str
    as_of: datetime | None = Field(description="End of the latest event-time window in the live table.")
    items: list[TrendingItem]


class PopularItem(Shape):
    item_id: int
    rank: int | None = None
    score: float | None
    window_days: int | None = None
    model_version: str | None = None
    run_id: str | None = None


class PopularProducts(Shape):
    category: int | None
    source: str = Field(description="popular_items (the popularity model) or catalogue (a category it has no "
                                    "list for: its items by interaction weight over 30 days).")
    items: list[PopularItem]


class UserStats(Shape):
    visitor_id: int
    views: int | None
    addtocarts: int | None
    likes: int | None
    transactions: int | None
    searches: int | None
    events: int | None
    first_seen: datetime | None
    last_seen: datetime | None
    active_days: int | None
    sessions: int | None
    hour_profile: list[float] | None
    weekday_profile: list[float] | None
    recency_days: float | None
    events_per_active_day: float | None
    view_to_cart_rate: float | None
    view_to_purchase_rate: float | None
    cart_to_purchase_rate: float | None
    top_categories: list[int] | None
    source_version: int
    recent_items: list[int] = Field(description="Live: the visitor's latest items, newest first.")


class SearchHit(Shape):
    item_id: int
    title: str
    category_id: int | None
    category_path: list[int] | None
    price: float | None
    price_band: int | None
    available: bool | None
    weight_30d: float | None
    relevance: float


class SearchResults(Shape):
    q: str
    items: list[SearchHit]


class Health(Shape):
    status: str
    database: str
    published: dict[str, dict[str, Any]] = Field(description="Live version of each published table.")
    session_model: dict[str, str] | None = Field(None, description="The session champion this worker holds "
                                                                   "(name, version, run_id), or null.")

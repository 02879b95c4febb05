"""Blending the model's list with the live session, the fallbacks, and parameter parsing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from clickrec_platform.serving.api.blend import (
    SESSION_SEEDS,
    FallbackRow,
    ModelRow,
    Provenance,
    SimilarRow,
    blend,
    top_up,
)
from clickrec_platform.serving.api.params import parse_window

ALS = Provenance("als", "7", "run-7")
KNN = Provenance("item_knn", "7", "run-7")
POP = Provenance(None, "2", "run-2")


def model(*items: int) -> list[ModelRow]:
    return [ModelRow(item, rank, ALS) for rank, item in enumerate(items, start=1)]


def neighbours(seed_position: int, *items: int) -> list[SimilarRow]:
    return [SimilarRow(item, seed_position, rank, KNN) for rank, item in enumerate(items, start=1)]


def ids(result) -> list[int]:
    return [item.item_id for item in result.items]


def test_the_model_alone_keeps_its_order():
    result = blend(model(10, 11, 12), [], seen=[], k=2)
    assert ids(result) == [10, 11]
    assert result.source == "model" and result.provenance == ALS
    assert {item.source for item in result.items} == {"model"}


def test_the_session_alone_ranks_the_newest_items_neighbours_first():
    result = blend([], neighbours(2, 30, 31) + neighbours(1, 20, 21), seen=[1, 2], k=4)
    assert ids(result) == [20, 21, 30, 31]  # recency decay: the newest item's neighbours come first
    assert result.source == "session" and result.provenance == KNN


def test_both_sources_blend_and_agreement_rises():
    result = blend(model(10, 11, 12, 13), neighbours(1, 20, 13), seen=[1], k=4)
    assert result.source == "blended" and result.provenance == ALS
    assert ids(result)[0] == 13  # in both lists
    assert next(i for i in result.items if i.item_id == 13).source == "model+session"
    assert ids(result)[1] == 20  # the fresh session's best outranks the model's best


def test_seen_items_are_excluded_unless_asked_not_to():
    rows, similar = model(10, 11, 12), neighbours(1, 11, 20)
    assert 11 not in ids(blend(rows, similar, seen=[11], k=5))
    assert 11 in ids(blend(rows, similar, seen=[11], k=5, exclude_seen=False))


def test_only_the_most_recent_seeds_count():
    result = blend([], neighbours(SESSION_SEEDS + 1, 50), seen=[], k=3)
    assert result.items == [] and result.source == "none" and result.provenance is None


def test_top_up_fills_from_trending_then_popular_without_repeats_or_seen_items():
    fallback = [FallbackRow(10, "trending", None), FallbackRow(40, "trending", None),
                FallbackRow(41, "popular", POP), FallbackRow(42, "popular", POP)]
    personal = blend(model(10), [], seen=[40], k=3)
    result = top_up(personal, fallback, seen=[40], k=3)
    assert ids(result) == [10, 41, 42]
    assert [i.source for i in result.items] == ["model", "popular", "popular"]
    assert result.source == "model" and result.provenance == ALS
    assert top_up(result, fallback, seen=[], k=3) is result  # already full


def test_an_unknown_visitor_gets_the_first_fallback_source_and_its_provenance():
    only_popular = [FallbackRow(41, "popular", POP), FallbackRow(42, "popular", POP)]
    result = top_up(blend([], [], [], k=2), only_popular, seen=[], k=2)
    assert ids(result) == [41, 42] and result.source == "popular" and result.provenance == POP
    trending = [FallbackRow(1, "trending", None), *only_popular]
    result = top_up(blend([], [], [], k=2), trending, seen=[], k=2)
    assert result.source == "trending" and result.provenance is None
    assert top_up(blend([], [], [], k=2), [], seen=[], k=2).source == "none"


@pytest.mark.parametrize(("text", "minutes"), [("30m", 30), ("1h", 60), ("2d", 2880), ("15", 15), ("10MIN", 10),
                                               ("7d", 10080), ("1m", 1)])
def test_windows_parse(text, minutes):
    assert parse_window(text) == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["", "abc", "1w", "-5m", "0m", "8d", "1.5h", "10s", " 10m "])
def test_bad_windows_say_why(text):
    with pytest.raises(ValueError, match="window must"):
        parse_window(text)

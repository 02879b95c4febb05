"""The feature functions on small frames, with values worked out by hand (Spark, no Delta needed)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from pyspark.sql import functions as F

from clickrec_platform.events.contract import FIELD_NAMES, spark_schema
from clickrec_platform.features.interactions import interactions
from clickrec_platform.features.items import item_features
from clickrec_platform.features.splits import from_ms, split_boundaries, training_splits
from clickrec_platform.features.users import user_features
from clickrec_platform.lake.silver import silver_rows
from clickrec_platform.recommend.data import splits_from_events
from clickrec_platform.sources.generator import GeneratorConfig, generate_events

pytestmark = pytest.mark.integration

HOUR = 3_600_000
DAY = 24 * HOUR
MONDAY = 1_430_697_600_000  # 2015-05-04 00:00 UTC


def _events(spark, rows):
    """rows: (ts, visitor_id, event, item_id, session_id)."""
    records = []
    for n, (ts, visitor, event, item, session) in enumerate(rows):
        record = dict.fromkeys(FIELD_NAMES)
        record.update(event_id=f"e{n}", ts=ts, visitor_id=visitor, event=event, item_id=item, session_id=session,
                      source="test", schema_version=1, query="shoes" if event == "search" else None)
        records.append(tuple(record[name] for name in FIELD_NAMES))
    frame = spark.createDataFrame(records, spark_schema())
    return silver_rows(frame, ingest_app="test", ingest_batch=0, kafka_partition=F.lit(0), kafka_offset=F.lit(0))


def _versions(spark, rows):
    """rows: (item_id, valid_from ms, valid_to ms | None, category_id, price, is_current)."""
    data = [(item, from_ms(start), None if end is None else from_ms(end), category, price, 1, current)
            for item, start, end, category, price, current in rows]
    return spark.createDataFrame(data, "item_id bigint, valid_from timestamp, valid_to timestamp, "
                                       "category_id bigint, price double, available int, is_current boolean")


def test_interactions_count_and_weigh_per_visitor_item_and_day(spark):
    events = _events(spark, [
        (MONDAY + 1 * HOUR, 1, "view", 100, "s1"),
        (MONDAY + 2 * HOUR, 1, "view", 100, "s1"),
        (MONDAY + 3 * HOUR, 1, "addtocart", 100, "s1"),
        (MONDAY + 4 * HOUR, 1, "transaction", 100, "s1"),
        (MONDAY + 5 * HOUR, 1, "search", None, "s1"),  # not an interaction
        (MONDAY + DAY + HOUR, 1, "like", 100, "s2"),  # the next day: a row of its own
        (MONDAY + HOUR, 2, "view", 200, "s3"),
    ])
    rows = {(r.event_date.isoformat(), r.visitor_id, r.item_id): r for r in interactions(events).collect()}
    assert set(rows) == {("2015-05-04", 1, 100), ("2015-05-05", 1, 100), ("2015-05-04", 2, 200)}
    first = rows[("2015-05-04", 1, 100)]
    assert (first.views, first.addtocarts, first.transactions, first.likes) == (2, 1, 1, 0)
    assert first.weight == 1 + 1 + 3 + 5
    assert first.first_ts == datetime(2015, 5, 4, 1) and first.last_ts == datetime(2015, 5, 4, 4)
    assert rows[("2015-05-05", 1, 100)].weight == 4


def test_the_spark_and_pandas_splits_agree_row_for_row_on_the_same_events(spark):
    # Ties at a cut, search events (no item) and every event type included: the generator's.
    frame = pd.concat(list(generate_events(GeneratorConfig(events=5_000, days=3, seed=8))), ignore_index=True)
    rows = list(frame[["ts", "visitor_id", "event", "item_id", "session_id"]].astype(object)
                .where(frame[["ts", "visitor_id", "event", "item_id", "session_id"]].notna(), None)
                .itertuples(index=False, name=None))
    events = _events(spark, rows)
    columns = ["visitor_id", "item_id", "split", "weight", "events"]
    # pyspark types toPandas() as a protocol of a few methods; it returns a pandas DataFrame
    spark_split = training_splits(events, split_boundaries(events, (0.7, 0.15, 0.15))).toPandas()[columns]  # type: ignore[index]
    pandas_split = splits_from_events(frame, (0.7, 0.15, 0.15))[columns]

    def ordered(split: pd.DataFrame) -> pd.DataFrame:
        return split.astype({"visitor_id": "int64", "item_id": "int64", "weight": "float64", "events": "int64"}
                            ).sort_values(["visitor_id", "item_id", "split"], ignore_index=True)

    pd.testing.assert_frame_equal(ordered(spark_split), ordered(pandas_split))


def test_user_features_by_hand(spark):
    events = _events(spark, [
        # visitor 1, no session ids (as in RetailRocket): 30 idle minutes start a new session
        (MONDAY + 10 * HOUR, 1, "view", 100, None),
        (MONDAY + 10 * HOUR + 60_000, 1, "view", 101, None),
        (MONDAY + 12 * HOUR, 1, "addtocart", 100, None),
        (MONDAY + DAY + 10 * HOUR, 1, "view", 102, None),  # Tuesday
        # visitor 2, session ids given
        (MONDAY + 20 * HOUR, 2, "view", 100, "a"),
        (MONDAY + 20 * HOUR + 1000, 2, "search", None, "a"),
        (MONDAY + 20 * HOUR + 2000, 2, "view", 101, "b"),
    ])
    # Item 100 moved from category 7 to category 8 at Monday 11:00: the view counts for 7, the cart for 8.
    versions = _versions(spark, [(100, 0, MONDAY + 11 * HOUR, 7, 10.0, False),
                                 (100, MONDAY + 11 * HOUR, None, 8, 10.0, True),
                                 (101, 0, None, 7, 5.0, True), (102, 0, None, 9, 1.0, True)])
    as_of = datetime(2015, 5, 6)
    rows = {r.visitor_id: r for r in user_features(events, versions, F.lit(as_of)).collect()}
    one, two = rows[1], rows[2]
    assert (one.views, one.addtocarts, one.transactions, one.searches, one.events) == (3, 1, 0, 0, 4)
    assert one.sessions == 3 and two.sessions == 2
    assert one.active_days == 2 and one.events_per_active_day == 2.0
    assert one.view_to_cart_rate == pytest.approx(1 / 3) and one.cart_to_purchase_rate == 0.0
    assert two.cart_to_purchase_rate is None  # no carts: no rate
    assert one.recency_days == pytest.approx((as_of - datetime(2015, 5, 5, 10)).total_seconds() / 86_400)
    assert one.hour_profile[10] == pytest.approx(0.75) and one.hour_profile[12] == pytest.approx(0.25)
    assert one.weekday_profile[0] == pytest.approx(0.75) and one.weekday_profile[1] == pytest.approx(0.25)
    # weights: category 7 = view 100 (1) + view 101 (1); category 8 = cart 100 (3); category 9 = view (1)
    assert one.top_categories == [8, 7, 9]
    assert two.top_categories == [7, 8]  # views of 100 (by then in 8) and 101 (7) weigh 1 each: ties by id


def test_item_features_by_hand(spark):
    daily = spark.createDataFrame([
        (datetime(2015, 5, 1).date(), 1, 100, 2, 0, 0, 0, 2.0),
        (datetime(2015, 5, 10).date(), 2, 100, 1, 1, 0, 1, 9.0),
        (datetime(2015, 5, 10).date(), 1, 300, 1, 0, 0, 0, 1.0),  # not in the catalogue
    ], "event_date date, visitor_id bigint, item_id bigint, views bigint, addtocarts bigint, likes bigint, "
       "transactions bigint, weight double")
    current = _versions(spark, [(100, 0, None, 7, 10.0, True), (200, 0, None, 8, 50.0, True)])
    categories = spark.createDataFrame([(7, 1), (8, 1)], "category_id bigint, root_id bigint")
    rows = {r.item_id: r for r in item_features(daily, current, categories,
                                                F.lit(datetime(2015, 5, 10).date())).collect()}
    assert set(rows) == {100, 200, 300}
    hot = rows[100]
    assert (hot.views, hot.transactions, hot.weight, hot.unique_visitors) == (3, 1, 11.0, 2)
    assert (hot.views_1d, hot.views_7d, hot.views_30d) == (1, 1, 3)
    assert hot.conversion_rate == pytest.approx(1 / 3) and hot.cart_rate == pytest.approx(1 / 3)
    assert (hot.category_id, hot.root_category_id, hot.price) == (7, 1, 10.0)
    assert hot.price_band < rows[200].price_band  # cheaper item, lower band
    assert rows[200].views == 0 and rows[200].conversion_rate is None
    assert rows[300].category_id is None and rows[300].price_band is None


def test_chronological_split_by_event_time(spark):
    # 20 views, one per hour, visitor 1 on item 100 throughout; cuts at 70% and 85% of the events.
    events = _events(spark, [(MONDAY + h * HOUR, 1 + h % 2, "view", 100, None) for h in range(20)])
    bounds = split_boundaries(events, (0.7, 0.15, 0.15))
    assert bounds.train_start == datetime(2015, 5, 4, 0)
    assert bounds.validation_start == datetime(2015, 5, 4, 13)  # the 70th percentile event: 13 before it
    splits = training_splits(events, bounds)
    by_split = {s: sum(r.events for r in splits.where(F.col("split") == s).collect())
                for s in ("train", "validation", "test")}
    assert sum(by_split.values()) == 20
    assert by_split["train"] == 13 and by_split["validation"] == 3 and by_split["test"] == 4
    for row in splits.collect():
        assert row.split_start <= row.first_ts <= row.last_ts < row.split_end
    with pytest.raises(ValueError, match="sum"):
        split_boundaries(events, (0.5, 0.2, 0.2))

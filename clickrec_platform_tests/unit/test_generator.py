"""The synthetic generator: reproducible, RetailRocket-shaped, and with the patterns it promises."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from clickrec_platform.events import decode, encode_batch, frame_to_events, invalid_reasons
from clickrec_platform.sources.generator import (
    GROUND_TRUTH_DIR,
    GenerationSummary,
    GeneratorConfig,
    Promotion,
    generate_events,
    write_retailrocket_files,
)
from clickrec_platform.sources.rejects import RejectLedger
from clickrec_platform.sources.retailrocket import (
    CATEGORY_TREE_FILE,
    EVENTS_FILE,
    ITEM_PROPERTIES_FILES,
    read_category_tree,
    read_events,
    read_item_properties,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# Two weeks from a Monday, with a promotion on Wednesday afternoon (day 2).
CONFIG = GeneratorConfig(
    seed=7,
    events=200_000,
    start_date=date(2015, 5, 4),
    days=14,
    chunk_events=50_000,
    promotions=(Promotion(day=2, start_hour=12, hours=4, multiplier=20.0),),
)
SMALL = dataclasses.replace(CONFIG, events=5_000, chunk_events=1_000)


def all_events(config: GeneratorConfig) -> pd.DataFrame:
    return pd.concat(generate_events(config), ignore_index=True)


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return all_events(CONFIG)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    out_dir = tmp_path_factory.mktemp("retailrocket")
    return out_dir, write_retailrocket_files(CONFIG, out_dir, progress=False)


def with_time(events: pd.DataFrame) -> pd.DataFrame:
    since_start = events["ts"] - CONFIG.start_ms
    return events.assign(day=since_start // DAY_MS, hour=(since_start % DAY_MS) // HOUR_MS)


def test_same_seed_gives_identical_events() -> None:
    pd.testing.assert_frame_equal(all_events(SMALL), all_events(SMALL))


def test_another_seed_gives_other_events() -> None:
    first, second = all_events(SMALL), all_events(dataclasses.replace(SMALL, seed=8))
    assert not set(first["event_id"]) & set(second["event_id"])
    assert not first["item_id"].head(100).equals(second["item_id"].head(100))


def test_size_is_about_what_was_asked_and_comes_in_bounded_chunks() -> None:
    frames = list(generate_events(SMALL))
    sizes = [len(frame) for frame in frames]
    assert 0.9 * SMALL.events < sum(sizes) < 1.1 * SMALL.events
    assert len(frames) >= 4 and max(sizes) < 1.5 * SMALL.chunk_events
    assert all(frame["ts"].is_monotonic_increasing for frame in frames)


def test_events_keep_the_contract(events: pd.DataFrame) -> None:
    assert invalid_reasons(events).tolist() == [None] * len(events)
    assert events["event_id"].is_unique
    sample = events.sample(2_000, random_state=0)
    _, values = encode_batch(sample)
    assert [decode(value) for value in values] == frame_to_events(sample)


def test_timestamps_stay_in_the_window(events: pd.DataFrame) -> None:
    assert events["ts"].min() >= CONFIG.start_ms
    # Sessions that start in the last hour may run on for a while after it.
    assert events["ts"].max() < CONFIG.start_ms + CONFIG.days * DAY_MS + HOUR_MS


def test_funnel_has_retailrocket_ratios(events: pd.DataFrame) -> None:
    share = events["event"].value_counts(normalize=True)
    retailrocket_kinds = (
        share[["view", "addtocart", "transaction"]] / share[["view", "addtocart", "transaction"]].sum()
    )
    assert retailrocket_kinds["view"] == pytest.approx(0.967, abs=0.01)
    assert retailrocket_kinds["addtocart"] == pytest.approx(0.025, abs=0.004)
    assert retailrocket_kinds["transaction"] == pytest.approx(0.008, abs=0.002)
    assert 0.001 < share["like"] < 0.02 and 0.001 < share["search"] < 0.02


def test_searches_carry_a_query_and_no_item(events: pd.DataFrame) -> None:
    searches = events[events["event"] == "search"]
    assert searches["item_id"].isna().all()
    assert (searches["query"].str.len() > 0).all()
    assert events.loc[events["event"] != "search", "query"].isna().all()


def test_a_basket_is_bought_by_one_visitor_at_once_after_carting_its_items(events: pd.DataFrame) -> None:
    bought = events[events["event"] == "transaction"]
    baskets = bought.groupby("transaction_id").agg(
        visitors=("visitor_id", "nunique"), times=("ts", "nunique")
    )
    assert (baskets["visitors"] == 1).all() and (baskets["times"] == 1).all()
    carts = events.loc[events["event"] == "addtocart", ["session_id", "item_id", "ts"]]
    matched = bought.merge(carts, on=["session_id", "item_id"], suffixes=("", "_cart"))
    carted_first = matched[matched["ts_cart"] <= matched["ts"]].drop_duplicates("event_id")
    assert len(carted_first) == len(bought)


def test_traffic_follows_the_hour_of_day(events: pd.DataFrame) -> None:
    timed = with_time(events)
    weekdays = timed[(timed["day"] % 7 < 5) & (timed["day"] != 2)]
    by_hour = weekdays["hour"].value_counts()
    assert by_hour[20] > 30 * by_hour[3]  # the profile asks for 100x


def test_weekends_start_later_than_weekdays(events: pd.DataFrame) -> None:
    timed = with_time(events)
    timed = timed[timed["day"] != 2]
    early = timed["hour"].between(6, 8)
    weekend = timed["day"] % 7 >= 5  # the window starts on a Monday
    assert early[~weekend].mean() > 2 * early[weekend].mean()  # the profiles ask for 3x


def test_a_promotion_multiplies_traffic(events: pd.DataFrame) -> None:
    timed = with_time(events)
    afternoon = timed["hour"].between(12, 15)
    promoted = (afternoon & (timed["day"] == 2)).sum()
    the_day_before = (afternoon & (timed["day"] == 1)).sum()
    assert 14 < promoted / the_day_before < 28  # the promotion asks for 20x


def test_visitors_views_concentrate_in_their_planted_tastes(
    events: pd.DataFrame, written: tuple[Path, GenerationSummary]
) -> None:
    out_dir, _ = written
    truth = out_dir / GROUND_TRUTH_DIR
    item_category = pd.read_parquet(truth / "items.parquet").set_index("item_id")["category_id"]
    tastes = pd.read_parquet(truth / "visitor_tastes.parquet")
    views = events.loc[events["event"] == "view", ["visitor_id", "item_id"]]
    views = views.assign(category_id=item_category.reindex(views["item_id"].astype("int64")).to_numpy())
    category_share = views["category_id"].value_counts(normalize=True)

    heavy = views.groupby("visitor_id").filter(lambda visitor: len(visitor) >= 20)
    in_taste = heavy.merge(tastes[["visitor_id", "category_id"]], how="left", indicator=True)
    share_in_taste = (in_taste["_merge"] == "both").groupby(in_taste["visitor_id"]).mean()
    chance = tastes.assign(share=tastes["category_id"].map(category_share).fillna(0))
    chance = chance.groupby("visitor_id")["share"].sum().reindex(share_in_taste.index)
    assert len(share_in_taste) > 100
    assert share_in_taste.median() > 0.6  # taste_strength plants 0.8
    assert (share_in_taste / chance).median() > 10


def test_written_files_read_back_without_rejects_and_match_the_stream(
    events: pd.DataFrame, written: tuple[Path, GenerationSummary], tmp_path: Path
) -> None:
    out_dir, summary = written
    with RejectLedger(tmp_path / "rejects.jsonl") as ledger:
        from_file = pd.concat(read_events(out_dir / EVENTS_FILE, ledger), ignore_index=True)
        properties = pd.concat(
            read_item_properties([out_dir / name for name in ITEM_PROPERTIES_FILES], ledger)
        )
        tree = read_category_tree(out_dir / CATEGORY_TREE_FILE, ledger)
    assert all(tally["rejected"] == 0 for tally in ledger.summary().values())

    in_file_format = events[events["event"].isin(["view", "addtocart", "transaction"])].reset_index(drop=True)
    columns = ["ts", "visitor_id", "event", "item_id", "transaction_id"]
    pd.testing.assert_frame_equal(from_file[columns], in_file_format[columns])
    assert summary.rows_written[EVENTS_FILE] == len(from_file)
    assert summary.events_by_type == events["event"].value_counts().to_dict()
    assert (
        len(properties)
        == summary.rows_written[ITEM_PROPERTIES_FILES[0]] + summary.rows_written[ITEM_PROPERTIES_FILES[1]]
    )
    assert len(tree) == summary.rows_written[CATEGORY_TREE_FILE]


def test_catalogue_files_agree_with_the_ground_truth(
    written: tuple[Path, GenerationSummary], tmp_path: Path
) -> None:
    out_dir, _ = written
    with RejectLedger(tmp_path / "rejects.jsonl") as ledger:
        properties = pd.concat(
            read_item_properties([out_dir / name for name in ITEM_PROPERTIES_FILES], ledger)
        )
        tree = read_category_tree(out_dir / CATEGORY_TREE_FILE, ledger)
    truth = pd.read_parquet(out_dir / GROUND_TRUTH_DIR / "items.parquet").set_index("item_id")
    first = properties[properties["ts"] == CONFIG.start_ms]

    category = first[first["property"] == "categoryid"].set_index("item_id")["value_number"]
    price = first[first["property"] == "790"].set_index("item_id")["value_number"]
    assert category.sort_index().astype("int64").tolist() == truth["category_id"].tolist()
    assert price.sort_index().astype("int64").tolist() == truth["price"].tolist()
    assert (first[first["property"] == "790"]["value_text"].str.fullmatch(r"n\d+\.000")).all()
    assert properties["ts"].nunique() > 1  # weekly changes follow the first snapshot

    parent = {
        category: None if pd.isna(parent_id) else int(parent_id)
        for category, parent_id in zip(tree["category_id"], tree["parent_id"], strict=True)
    }
    assert sum(parent_id is None for parent_id in parent.values()) == CONFIG.root_categories
    assert set(truth["category_id"]) <= set(parent) - set(parent.values())  # items sit in leaves

    def depth(category: int) -> int:
        up = parent[category]
        return 0 if up is None else 1 + depth(up)

    assert max(map(depth, parent)) == CONFIG.category_levels - 1


def test_bad_configuration_is_refused_early() -> None:
    with pytest.raises(ValueError, match="events"):
        GeneratorConfig(events=0)
    with pytest.raises(ValueError, match="taste_strength"):
        GeneratorConfig(taste_strength=1.5)
    with pytest.raises(ValueError, match="start_hour"):
        Promotion(day=1, start_hour=24, hours=2)

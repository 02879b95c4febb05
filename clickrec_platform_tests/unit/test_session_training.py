"""Session models in training: gold.sessions round trip and checks, the search on validation, the
test refit, the paired session gate's references, and the servable the API holds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clickrec_platform.recommend.gate import BASELINE_REFERENCE, CHAMPION_REFERENCE, decide
from clickrec_platform.recommend.session.knn import VSKNN
from clickrec_platform.recommend.session.protocol import SessionProtocol, build_sessions, next_item_cases
from clickrec_platform.recommend.session.table import (
    session_counts,
    session_data_from_frame,
    sessions_frame,
    unknown_items,
)
from clickrec_platform.recommend.session.training import (
    SessionServable,
    best_session_challenger,
    build_session_model,
    session_gate_references,
    train_session_candidates,
)
from clickrec_platform.sources.generator import GeneratorConfig, generate_events

PROTOCOL = SessionProtocol(test_days=2, validation_days=2)


@pytest.fixture(scope="module")
def data():
    columns = ["visitor_id", "session_id", "ts", "event", "item_id"]
    events = pd.concat([f[columns] for f in generate_events(GeneratorConfig(events=40_000, days=10, seed=3))])
    return build_sessions(events, PROTOCOL)


def _same(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("items", "timestamps", "offsets",
                                                                       "visitor_ids", "session_keys"))


def test_the_sessions_table_gives_back_the_same_session_data(data):
    frame = sessions_frame(data)
    again = session_data_from_frame(frame.sample(frac=1.0, random_state=1), PROTOCOL)  # row order is free

    assert np.array_equal(again.item_ids, data.item_ids)
    for split in ("train", "validation", "test", "validation_full"):
        assert _same(getattr(again, split), getattr(data, split)), split
    assert (again.test_from_ms, again.validation_from_ms) == (data.test_from_ms, data.validation_from_ms)
    assert set(frame["split"]) == {"train", "validation", "test"}
    validation = frame[frame["split"] == "validation"]
    assert (len(validation), int(validation["evaluated"].sum())) == (len(data.validation_full.items),
                                                                     len(data.validation.items))


def test_the_table_checks_pass_on_the_protocol_and_catch_an_unknown_test_item(data):
    frame = sessions_frame(data)
    passed, counts = session_counts(data)
    assert passed and counts["test_sessions"] > 0 and counts["validation_sessions"] > 0
    assert unknown_items(frame) == {"test_items_unknown_to_training": 0, "validation_items_unknown_to_train": 0}

    broken = frame.copy()
    broken.loc[broken.index[broken["split"] == "test"][0], "item_id"] = 10**12
    assert unknown_items(broken)["test_items_unknown_to_training"] == 1


def test_candidates_are_searched_on_validation_and_scored_once_on_test(data):
    messages: list[str] = []
    candidates = train_session_candidates(
        data, ["popularity", "sknn", ("vsknn", {"k": "200", "sample_size": "500"})],
        grids={"sknn": {"k": [20, 50]}, "vsknn": {"k": [1, 2]}}, progress=messages.append)

    by_name = {c.name: c for c in candidates}
    assert by_name["sknn"].searched == 2 and by_name["sknn"].params["k"] in (20, 50)
    assert by_name["vsknn"].searched == 0 and by_name["vsknn"].params["k"] == 200  # given params: no search
    cases = next_item_cases(data.test)
    for candidate in candidates:
        assert candidate.validation.n_cases == len(next_item_cases(data.validation))
        assert candidate.test.n_cases == len(cases)
        assert candidate.model.n_items == data.n_items  # refitted on train + validation
        assert len(candidate.model.index.end_ms if hasattr(candidate.model, "index") else [0]) >= 1
    assert by_name["sknn"].value("hitrate@20") > by_name["popularity"].value("hitrate@20")
    assert best_session_challenger(candidates, "mrr@20").name != "popularity"


def test_the_session_gate_pairs_the_challenger_with_popularity_and_the_retrained_champion(data):
    candidates = train_session_candidates(data, ["popularity", "sknn", "vsknn"], grids={})
    best = best_session_challenger(candidates, "hitrate@20")
    champion = next(c for c in candidates if c.name != best.name and c.name != "popularity")
    logged = (champion.name, {k: str(v) for k, v in champion.params.items()})

    references, note = session_gate_references(best, candidates, logged, "hitrate@20", n_boot=200)
    assert set(references) == {BASELINE_REFERENCE, CHAMPION_REFERENCE} and "retrained here" in note
    assert references[BASELINE_REFERENCE].difference.low > 0  # clearly better than popularity
    assert references[CHAMPION_REFERENCE].value == champion.value("hitrate@20")

    against_itself, _ = session_gate_references(best, candidates, (best.name, {k: str(v) for k, v in
                                                                               best.params.items()}),
                                                "hitrate@20", n_boot=200)
    decision = decide(best.value("hitrate@20"), against_itself, "hitrate@20")
    assert not decision.promote and "does not beat the champion" in decision.reason  # a tie is not a win

    unknown, note = session_gate_references(best, candidates, ("stan", {"k": "7"}), "hitrate@20", n_boot=200)
    assert set(unknown) == {BASELINE_REFERENCE} and "not trained here" in note


def test_the_servable_answers_in_item_ids_what_the_model_answers_in_indices(data):
    model = VSKNN(k=200, sample_size=500).fit(data.train_full)
    servable = SessionServable(model, data.item_ids)
    session = data.test.session(0)[0][:3]
    expected_items, expected_scores = model.recommend(session, k=10)

    answer = servable.recommend_ids([*data.item_ids[session], 10**12], k=10)  # an unknown id is skipped
    assert [item for item, _ in answer] == data.item_ids[expected_items].tolist()
    assert [score for _, score in answer] == pytest.approx(expected_scores.tolist())
    assert servable.recommend_ids([10**12], k=10) == []


def test_logged_params_come_back_as_the_same_model():
    model = build_session_model("stan", {"k": "50", "lambda_spw": "1.81", "lambda_snh": "None"})
    assert model.params()["k"] == 50 and model.params()["lambda_spw"] == 1.81 and model.params()["lambda_snh"] is None
    with pytest.raises(ValueError, match="unknown session model"):
        build_session_model("gru4rec")


def test_validation_items_unknown_to_train_are_kept_whole_but_not_evaluated():
    day, protocol = 86_400_000, SessionProtocol(test_days=1, validation_days=1, min_item_support=1)
    rows = [(1, None, 0, "view", 10), (1, None, 100, "view", 11),  # train
            (2, None, day + 500, "view", 10), (2, None, day + 600, "view", 12), (2, None, day + 700, "view", 11),
            (3, None, 2 * day + 900, "view", 11), (3, None, 2 * day + 950, "view", 10)]  # test
    data = build_sessions(pd.DataFrame(rows, columns=["visitor_id", "session_id", "ts", "event", "item_id"]),
                          protocol)
    frame = sessions_frame(data)
    validation = frame[frame["split"] == "validation"]
    assert validation["item_id"].tolist() == [10, 12, 11] and validation["evaluated"].tolist() == [True, False, True]
    again = session_data_from_frame(frame, protocol)
    assert data.item_ids[again.validation.items].tolist() == [10, 11]
    assert data.item_ids[again.validation_full.items].tolist() == [10, 12, 11]


def test_the_comparison_table_has_a_row_per_candidate_with_validation_and_test(data):
    from clickrec_platform.recommend.session.training import session_comparison_table

    candidates = train_session_candidates(data, ["popularity", "sr"], grids={})
    table = session_comparison_table(candidates).splitlines()
    assert table[0].startswith("| model | params | val hitrate@20") and "test ndcg@20" in table[0]
    assert [row.split(" | ")[0] for row in table[2:]] == ["| popularity", "| sr"]
    assert f"{candidates[1].test.value('mrr@20'):.4f}" in table[3]


def test_the_comparison_chart_shows_each_candidates_validation_interval(data, tmp_path):
    from clickrec_platform.recommend.session.training import session_comparison_chart

    candidates = train_session_candidates(data, ["popularity", "sr"], grids={})
    path = session_comparison_chart(candidates, tmp_path / "charts" / "sessions.png", n_boot=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000


def test_worker_processes_give_the_scores_of_one_process(data):
    names, grids = ["popularity", "sknn", "stan"], {"sknn": {"k": [20, 50]}}
    one = train_session_candidates(data, names, grids, progress=lambda _: None)
    two = train_session_candidates(data, names, grids, progress=lambda _: None, workers=2)

    for a, b in zip(one, two, strict=True):
        assert (a.name, a.params, a.searched) == (b.name, b.params, b.searched)
        assert np.array_equal(a.validation.ranks, b.validation.ranks) and np.array_equal(a.test.ranks, b.test.ranks)
        session = data.test.session(0)[0][:3]
        assert np.array_equal(a.model.recommend(session)[0], b.model.recommend(session)[0])  # the refit came back

"""gold.sessions' asset checks: read back from the lake and judged (``recommend/session/table.judge_sessions``).
Both are blocking: the session models learn from and are scored on this table."""

import dagster as dg

from clickrec_platform.defs import checks
from clickrec_platform.defs.resources import LakeResource
from clickrec_platform.defs.sessions.assets import SESSIONS_KEY, session_protocol
from clickrec_platform.lake import duck
from clickrec_platform.lake.tables import GOLD_SESSIONS
from clickrec_platform.recommend.session.table import judge_sessions


@dg.multi_asset_check(
    specs=[
        checks.spec(SESSIONS_KEY, "session_counts", "Train, validation and test each hold sessions.", blocking=True),
        checks.spec(SESSIONS_KEY, "no_unknown_test_items",
                    "No test item unknown to train + validation; no evaluated validation item unknown to train.",
                    blocking=True),
    ],
    can_subset=True, name="sessions_checks",
)
def sessions_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource):
    settings = lake.settings()
    with duck.connect(settings) as con:
        frame = con.execute(f"SELECT * FROM {duck.scan(GOLD_SESSIONS.path(settings))}").df()
    yield from checks.selected(context, SESSIONS_KEY, judge_sessions(frame, session_protocol(settings)))

"""Champion/challenger promotion, as a pure decision over paired differences.

A challenger is promoted only when it beats the popularity baseline *and* the current champion
(when there is one) on the same metric of the same frozen evaluation, *beyond resampling noise*:
the paired bootstrap interval of the difference (challenger - reference, the same visitors or
sessions resampled for both) must lie entirely above 0 at the configured confidence
(`CLICKREC_GATE_CONFIDENCE`). A point estimate that is higher by 0.0001 is not a win.

Beating the baseline is required even with no champion: a first model that loses to "show
everyone the bestsellers" is worse than no model. An optional `min_relative_lift` also asks the
point estimate to clear the reference by that share (0.05 = 5% better).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from clickrec_platform.recommend.metrics import ConfidenceInterval

CHAMPION_REFERENCE = "champion"
BASELINE_REFERENCE = "popularity baseline"


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class Reference:
    """What the challenger is compared with: the reference's value and the paired difference."""

    value: float
    difference: ConfidenceInterval  # challenger - reference on the same users/sessions


def decide(
    challenger: float,
    references: Mapping[str, Reference],
    metric: str,
    confidence: float = 0.95,
    min_relative_lift: float = 0.0,
) -> GateDecision:
    """Promote when, against every reference, the interval of the difference lies above 0 (and
    the point estimate clears `min_relative_lift`). `references` must hold the popularity
    baseline; it holds the champion when there is one."""
    if min_relative_lift < 0:
        raise ValueError("min_relative_lift must be >= 0")
    if BASELINE_REFERENCE not in references:
        raise KeyError(f"the gate needs the {BASELINE_REFERENCE} among the references")
    verdicts = []
    promote = True
    for who, ref in references.items():
        interval = ref.difference
        above_zero = interval.low > 0
        bar = ref.value * (1 + min_relative_lift)
        clears_lift = challenger > bar if min_relative_lift else True
        beats = above_zero and clears_lift
        promote &= beats
        verdicts.append(
            f"{'beats' if beats else 'does not beat'} the {who} ({ref.value:.4f}, lift "
            f"{_relative(challenger, ref.value)}; difference {interval.mean:+.4f}, {confidence:.0%} interval "
            f"[{interval.low:+.4f}, {interval.high:+.4f}] {_where(interval)}"
            + (f"; needs > {bar:.4f}" if min_relative_lift else "")
            + ")"
        )
    if CHAMPION_REFERENCE not in references:
        verdicts.append("there is no champion yet")
    reason = f"challenger {metric}={challenger:.4f} " + "; ".join(verdicts) + f" -> {'promote' if promote else 'keep'}"
    return GateDecision(promote=promote, reason=reason)


def _where(interval: ConfidenceInterval) -> str:
    if interval.low > 0:
        return "above 0"
    return "straddles 0" if interval.high > 0 else "not above 0"


def _relative(value: float, reference: float) -> str:
    if reference == 0:
        return "n/a, reference is 0"
    return f"{(value - reference) / reference:+.1%}"

"""Champion/challenger promotion, as a pure decision over validation metrics.

A challenger is promoted only when it beats the popularity baseline *and* the current champion
(when there is one) on the same metric of the same frozen evaluation. Beating the baseline is
required even with no champion: a first model that loses to "show everyone the bestsellers"
is worse than no model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from clickrec_platform.recommend.metrics import DEFAULT_METRIC


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    baseline: Mapping[str, float],
    metric: str = DEFAULT_METRIC,
    min_relative_lift: float = 0.0,
) -> GateDecision:
    """Promote when the challenger's `metric` exceeds each reference by more than
    `min_relative_lift` (0.05 = 5% better); equal is not better."""
    if min_relative_lift < 0:
        raise ValueError("min_relative_lift must be >= 0")
    references = {"popularity baseline": baseline}
    if champion is not None:
        references["champion"] = champion
    for who, metrics in {"challenger": challenger, **references}.items():
        if metric not in metrics:
            raise KeyError(f"{who} has no {metric!r} (has {sorted(metrics)})")

    value = challenger[metric]
    verdicts = []
    promote = True
    for who, metrics in references.items():
        bar = metrics[metric] * (1 + min_relative_lift)
        lift = _relative(value, metrics[metric])
        beats = value > bar
        promote &= beats
        verdicts.append(
            f"{'beats' if beats else 'does not beat'} the {who} ({metrics[metric]:.4f}, lift {lift}"
            + (f", needs > {bar:.4f}" if min_relative_lift else "")
            + ")"
        )
    if champion is None:
        verdicts.append("there is no champion yet")
    reason = (
        f"challenger {metric}={value:.4f} " + "; ".join(verdicts) + f" -> {'promote' if promote else 'keep'}"
    )
    return GateDecision(promote=promote, reason=reason)


def _relative(value: float, reference: float) -> str:
    if reference == 0:
        return "n/a, reference is 0"
    return f"{(value - reference) / reference:+.1%}"

"""The targets a delivery figure is judged against: the guide's, and the DORA 2024 performance bands.

The guide (Métriques de succès): deployment frequency "multiple per day", lead time < 1 h (commit
to production), MTTR < 5 min, change failure rate < 5 %; operational: deployment success rate
> 95 %, RTO < 4 h, RPO < 1 h, rollback < 5 min; a canary is aborted within Flagger's interval ×
threshold = 1 min × 5 = 5 min in the guide's configuration.

DORA 2024 (dora.dev, State of DevOps 2024), per cluster:

| band   | deployment frequency            | lead time         | change fail rate | recovery           |
|--------|---------------------------------|-------------------|------------------|--------------------|
| elite  | on demand (multiple a day)      | < 1 day           | 5 %              | < 1 hour           |
| high   | once a day to once a week       | 1 day to 1 week   | 20 %             | < 1 day            |
| medium | once a week to once a month     | 1 week to 1 month | 10 %             | < 1 day            |
| low    | once a month to once in 6 months| 1 to 6 months     | 40 %             | 1 week to 1 month  |

Frequency, lead time and recovery are ranges, so a value falls in the best band whose bound it
meets (recovery < 1 day is "high": high and medium share that bound). The change fail rates are
each cluster's typical rate, not bounds (medium's is lower than high's), so a rate is placed in
the cluster whose typical rate is nearest.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Target", "TARGETS", "frequency_band", "lead_time_band", "failure_rate_band", "recovery_band",
           "DORA_BANDS"]

HOUR, DAY = 3600.0, 86400.0


@dataclass(frozen=True)
class Target:
    """One of the guide's targets: ``value <op> limit``."""

    name: str
    limit: float
    higher_is_better: bool
    text: str

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value >= self.limit if self.higher_is_better else value < self.limit


TARGETS = {
    "deploys_per_day": Target("deployment frequency", 2.0, True, "multiple a day (≥ 2 / day)"),
    "lead_time_s": Target("lead time for changes", HOUR, False, "< 1 h"),
    "mttr_s": Target("time to recover (mean)", 300.0, False, "< 5 min"),
    "change_failure_rate": Target("change failure rate", 0.05, False, "< 5 %"),
    "success_rate": Target("deployment success rate", 0.95, True, "> 95 %"),
    "rollback_s": Target("rollback time", 300.0, False, "< 5 min"),
    "canary_abort_s": Target("canary abort time", 300.0, False, "< 5 min (1 min × 5 checks)"),
    "rto_s": Target("RTO", 4 * HOUR, False, "< 4 h"),
    "rpo_s": Target("RPO", HOUR, False, "< 1 h"),
}

DORA_BANDS = {
    "deployment frequency": {"elite": "on demand (multiple a day)", "high": "once a day to once a week",
                             "medium": "once a week to once a month", "low": "once a month to once in 6 months"},
    "lead time": {"elite": "< 1 day", "high": "1 day to 1 week", "medium": "1 week to 1 month", "low": "1 to 6 months"},
    "change fail rate": {"elite": "5 %", "high": "20 %", "medium": "10 %", "low": "40 %"},
    "recovery time": {"elite": "< 1 hour", "high": "< 1 day", "medium": "< 1 day", "low": "1 week to 1 month"},
}


def frequency_band(per_day: float | None) -> str:
    if per_day is None:
        return "unknown"
    for band, floor in (("elite", 1.0), ("high", 1 / 7), ("medium", 1 / 30), ("low", 1 / 182)):
        if per_day > floor if band == "elite" else per_day >= floor:
            return band
    return "below low"


def lead_time_band(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    for band, bound in (("elite", DAY), ("high", 7 * DAY), ("medium", 30 * DAY), ("low", 182 * DAY)):
        if seconds < bound:
            return band
    return "below low"


def failure_rate_band(rate: float | None) -> str:
    if rate is None:
        return "unknown"
    typical = {"elite": 0.05, "medium": 0.10, "high": 0.20, "low": 0.40}
    return min(typical, key=lambda band: abs(rate - typical[band]))


def recovery_band(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    for band, bound in (("elite", HOUR), ("high", DAY), ("low", 30 * DAY)):
        if seconds < bound:
            return band
    return "below low"

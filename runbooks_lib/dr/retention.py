"""Which backups to keep: the guide's 30 days daily, 12 weeks weekly, 2 years monthly.

Grandfather-father-son: the newest backup of each of the last ``daily_days`` days is kept,
the newest of each of the last ``weekly_weeks`` ISO weeks, and the newest of each of the last
``monthly_months`` months; everything else may go. ``plan_retention`` only decides and says
why for every backup: deleting is a separate step the runbook shows first.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

__all__ = ["RetentionDecision", "plan_retention"]


@dataclass(frozen=True)
class RetentionDecision:
    name: str
    taken_at: datetime
    keep: bool
    reasons: tuple[str, ...]  # why kept ("daily 2026-12-01", "weekly 2026-W48"), or why not


def _month_index(moment: datetime) -> int:
    return moment.year * 12 + moment.month - 1


def plan_retention(backups: Iterable[tuple[str, datetime]], now: datetime, daily_days: int = 30,
                   weekly_weeks: int = 12, monthly_months: int = 24) -> list[RetentionDecision]:
    """Decide for each ``(name, taken_at)`` whether to keep it; newest first.

    The newest backup is always kept, whatever its age: a policy must never leave nothing.
    Backups dated in the future (clock skew) are kept and say so.
    """
    items = sorted(backups, key=lambda item: item[1], reverse=True)
    reasons: dict[str, list[str]] = {name: [] for name, _ in items}
    seen: set[tuple[str, object]] = set()
    today = now.date()
    this_week = now.isocalendar()
    week_start = today - timedelta(days=this_week.weekday - 1)
    for name, taken in items:
        if taken > now:
            reasons[name].append("dated in the future")
            continue
        day = taken.date()
        iso = taken.isocalendar()
        buckets = []
        if (today - day).days < daily_days:
            buckets.append(("daily", day.isoformat()))
        if (week_start - (day - timedelta(days=iso.weekday - 1))).days // 7 < weekly_weeks:
            buckets.append(("weekly", f"{iso.year}-W{iso.week:02d}"))
        if _month_index(now) - _month_index(taken) < monthly_months:
            buckets.append(("monthly", f"{taken.year}-{taken.month:02d}"))
        for bucket in buckets:
            if bucket not in seen:  # newest first: the first one met in a bucket is its newest
                seen.add(bucket)
                reasons[name].append(f"{bucket[0]} {bucket[1]}")
    if items and not reasons[items[0][0]]:
        reasons[items[0][0]].append("newest backup")
    return [
        RetentionDecision(name, taken, bool(reasons[name]),
                          tuple(reasons[name]) or ("outside every retention window or not the newest in its window",))
        for name, taken in items
    ]

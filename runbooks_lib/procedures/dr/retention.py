"""Which backups to keep: the guide's 30 days daily, 12 weeks weekly, 2 years monthly.

Grandfather-father-son: the newest backup of each of the last ``daily_days`` days is kept,
the newest of each of the last ``weekly_weeks`` ISO weeks, and the newest of each of the last
``monthly_months`` months; everything else may go. ``plan_retention`` only decides and says
why for every backup: deleting is a separate step the runbook shows first.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from .store import BackupStore

__all__ = ["RetentionDecision", "plan_retention", "prune_backups"]


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


def prune_backups(store: "BackupStore", now: datetime, *, daily_days: int = 30, weekly_weeks: int = 12,
                  monthly_months: int = 24, apply: bool = False) -> Any:
    """The retention plan for every stored backup as a table; deletes only with ``apply=True``.

    Show it first (``apply=False`` is the default), read it, then apply: the table says for each
    backup why it is kept or why it may go. Deleting goes by the manifests' dates, so it needs a
    store with a seal (only authentic manifests are listed): an edited date must not get the
    newest backup deleted.
    """
    import pandas as pd

    from ...errors import ParameterError

    if apply and store.seal is None:
        raise ParameterError("deleting backups by their manifests' dates needs those manifests authenticated: "
                             "give the store a seal (VaultSeal with the profile's transit key)")
    manifests = {m.name: m for m in store.list()}
    decisions = plan_retention(((n, m.taken) for n, m in manifests.items()), now, daily_days, weekly_weeks,
                               monthly_months)
    rows = []
    for d in decisions:
        action = "keep" if d.keep else ("deleted" if apply else "would delete")
        if apply and not d.keep:
            store.delete(d.name)
        rows.append({"backup": d.name, "taken (UTC)": f"{d.taken_at:%Y-%m-%d %H:%M}", "bytes": manifests[d.name].size,
                     "action": action, "why": "; ".join(d.reasons)})
    return pd.DataFrame(rows, columns=["backup", "taken (UTC)", "bytes", "action", "why"])

"""Which backups to keep: the guide's 30 days daily, 12 weeks weekly, 2 years monthly.

Grandfather-father-son: the newest backup of each of the last ``daily_days`` days is kept,
the newest of each of the last ``weekly_weeks`` ISO weeks, and the newest of each of the last
``monthly_months`` months; everything else may go. ``plan_retention`` only decides and says
why for every backup: deleting is a separate step the runbook shows first.

Retention keeps the proof (issue 28): whatever its age, the newest backup a drill proved
(:mod:`.proof`) is kept, and so is the newest proven backup of each class, daily (the newest of
its day), weekly (of its ISO week) and monthly (of its month). Deleting every backup ever
restored would leave only backups nobody knows to be good.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    from .store import BackupStore

__all__ = ["RetentionDecision", "plan_retention", "prune_backups", "CLASSES"]

CLASSES = ("daily", "weekly", "monthly")


@dataclass(frozen=True)
class RetentionDecision:
    name: str
    taken_at: datetime
    keep: bool
    reasons: tuple[str, ...]  # why kept ("daily 2026-12-01", "weekly 2026-W48"), or why not


def _month_index(moment: datetime) -> int:
    return moment.year * 12 + moment.month - 1


def _classes(items: list[tuple[str, datetime]]) -> dict[str, set[str]]:
    """The classes each backup (newest first) stands for, windows aside: the newest of its day is
    a daily, of its ISO week a weekly, of its month a monthly."""
    seen: set[tuple[str, object]] = set()
    classes: dict[str, set[str]] = {name: set() for name, _ in items}
    for name, taken in items:
        iso = taken.isocalendar()
        for bucket in (("daily", taken.date()), ("weekly", (iso.year, iso.week)), ("monthly", (taken.year, taken.month))):
            if bucket not in seen:
                seen.add(bucket)
                classes[name].add(bucket[0])
    return classes


def _keep_proofs(items: list[tuple[str, datetime]], proven: Mapping[str, str], reasons: dict[str, list[str]]) -> None:
    """The newest proven backup, and the newest proven one of each class, are kept whatever their age."""
    mine = [name for name, _ in items if name in proven]
    if not mine:
        return
    classes = _classes(items)
    picks: dict[str, list[str]] = {mine[0]: ["newest proven backup"]}
    for kind in CLASSES:
        pick = next((name for name in mine if kind in classes[name]), None)
        if pick is not None:
            picks.setdefault(pick, []).append(f"newest proven {kind}")
    for name, what in picks.items():
        reasons[name].append(f"proof kept: {', '.join(what)} ({proven[name]})")


def plan_retention(backups: Iterable[tuple[str, datetime]], now: datetime, daily_days: int = 30,
                   weekly_weeks: int = 12, monthly_months: int = 24,
                   proven: Mapping[str, str] | None = None) -> list[RetentionDecision]:
    """Decide for each ``(name, taken_at)`` whether to keep it; newest first.

    The newest backup is always kept, whatever its age: a policy must never leave nothing.
    ``proven`` (backup name -> how it was proven) keeps the proof: see the module's docstring.
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
    _keep_proofs([(n, t) for n, t in items if t <= now], proven or {}, reasons)
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
                               monthly_months, proven=_proven(store, list(manifests.values())))
    rows = []
    for d in decisions:
        action = "keep" if d.keep else ("deleted" if apply else "would delete")
        if apply and not d.keep:
            store.delete(d.name)
        rows.append({"backup": d.name, "taken (UTC)": f"{d.taken_at:%Y-%m-%d %H:%M}", "bytes": manifests[d.name].size,
                     "action": action, "why": "; ".join(d.reasons)})
    return pd.DataFrame(rows, columns=["backup", "taken (UTC)", "bytes", "action", "why"])


def _proven(store: "BackupStore", manifests: list[Any]) -> dict[str, str]:
    """Backup name -> its proof, for the backups a valid stamp proves (stamps are checked with the
    store's seal; a store without one vouches for no proof)."""
    from .proof import proofs

    if store.seal is None:
        return {}
    found = proofs(store, manifests, store.seal)
    return {name: f"run {p.stamp.run_id}, {p.stamp.proven_at[:10]}" for name, p in found.items() if p.stamp is not None}

"""The guide's retention (30 days daily, 12 weeks weekly, 24 months monthly), decided before deleting."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from runbooks_lib.dr.retention import plan_retention

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def daily_backups(days: int, per_day: int = 1) -> list[tuple[str, datetime]]:
    out = []
    for d in range(days):
        for h in range(per_day):
            moment = (NOW - timedelta(days=d)).replace(hour=3 + h, minute=0)
            out.append((moment.strftime("b-%Y%m%dT%H"), moment))
    return out


def kept(decisions) -> set[str]:
    return {d.name for d in decisions if d.keep}


def test_last_30_days_are_all_kept_and_one_per_day() -> None:
    decisions = plan_retention(daily_backups(30, per_day=2), NOW)
    assert len(kept(decisions)) == 30
    for d in decisions:
        assert d.keep == d.name.endswith("T04"), d  # the newest of each day


def test_weekly_then_monthly_then_nothing() -> None:
    decisions = {d.name: d for d in plan_retention(daily_backups(3 * 365), NOW)}
    keep = [d for d in decisions.values() if d.keep]
    weekly_only = [d for d in keep if d.reasons and all(r.startswith("weekly") for r in d.reasons)]
    monthly_only = [d for d in keep if d.reasons and all(r.startswith("monthly") for r in d.reasons)]
    assert 30 <= len(keep) <= 30 + 12 + 24
    assert weekly_only and monthly_only
    oldest_kept = min(d.taken_at for d in keep)
    assert NOW - oldest_kept < timedelta(days=2 * 366)
    old = [d for d in decisions.values() if NOW - d.taken_at > timedelta(days=2 * 366)]
    assert old and not any(d.keep for d in old)
    assert all(d.reasons for d in decisions.values())


def test_the_newest_backup_is_kept_even_when_old() -> None:
    ancient = NOW - timedelta(days=5000)
    decisions = plan_retention([("ancient", ancient)], NOW)
    assert decisions[0].keep and decisions[0].reasons == ("newest backup",)


def test_future_backups_are_kept_and_said_so() -> None:
    decisions = plan_retention([("skewed", NOW + timedelta(hours=2)), ("today", NOW)], NOW)
    assert all(d.keep for d in decisions)
    assert decisions[0].reasons == ("dated in the future",)

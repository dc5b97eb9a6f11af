"""The guide's retention (30 days daily, 12 weeks weekly, 24 months monthly), decided before deleting."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from runbooks_lib.procedures.dr.retention import plan_retention, prune_backups

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


class _TestSeal:
    """A local HMAC standing for Vault's transit HMAC (the protocol the store takes)."""

    key = b"k" * 32

    def sign(self, data: bytes) -> str:
        import hashlib
        import hmac

        return "vault:v1:" + hmac.new(self.key, data, hashlib.sha256).hexdigest()

    def verify(self, items: list[tuple[bytes, str]]) -> list[bool]:
        import hmac

        return [hmac.compare_digest(self.sign(data), mac) for data, mac in items]


def test_prune_shows_first_and_deletes_only_when_applied(tmp_path) -> None:
    from dataclasses import replace

    from runbooks_lib.errors import ParameterError
    from runbooks_lib.procedures.dr.store import BackupStore, Manifest

    seal = _TestSeal()
    store = BackupStore(str(tmp_path), seal=seal)
    names = []
    for days in (0, 1, 400, 900):
        taken = NOW - timedelta(days=days)
        name = f"veza_db-{taken:%Y%m%d}"
        names.append(name)
        fields = dict(name=name, database="veza_db", taken_at=taken.isoformat(), finished_at=taken.isoformat(),
                      source_lsn="0/1", source_time=taken.isoformat(), size=10, plain_size=9, sha256="0" * 64,
                      row_counts={}, marker=name, transit={}, tool_versions={}, duration_s=1.0)
        manifest = Manifest(**fields)
        store.write_text(name, ".manifest.json", replace(manifest, authentication=seal.sign(manifest.signed_bytes())).to_json())
        store.write_text(name, ".dump.enc", "x")
        store.write_text(name, ".key", "vault:v1:x")
    shown = prune_backups(store, NOW)
    assert list(shown["action"]) == ["keep", "keep", "keep", "would delete"]
    assert len(store.files()) == 12  # nothing deleted by showing
    with pytest.raises(ParameterError, match="authenticated"):  # dates nobody vouches for delete nothing
        prune_backups(BackupStore(str(tmp_path)), NOW, apply=True)
    assert len(store.files()) == 12
    done = prune_backups(store, NOW, apply=True)
    assert list(done["action"]) == ["keep", "keep", "keep", "deleted"]
    assert [m.name for m in store.list()] == names[:3]
    assert not any(names[3] in f for f in store.files())


# -- issue 28: retention keeps the proof ---------------------------------------------------------

def test_with_only_old_backups_the_newest_proven_one_is_kept() -> None:
    # Three years of weekly backups, all older than every window (30 d, 12 w, 24 m) once the clock
    # is moved on: only the newest backup and the proofs may survive.
    later = NOW + timedelta(days=3 * 365)
    backups = [(f"b{n:03d}", NOW - timedelta(weeks=n)) for n in range(150)]
    proven = {"b010": "run r10", "b040": "run r40", "b120": "run r120"}
    decisions = {d.name: d for d in plan_retention(backups, later, proven=proven)}
    kept = {n for n, d in decisions.items() if d.keep}
    assert "b010" in kept and kept <= {"b000", *proven}
    assert decisions["b010"].reasons == ("proof kept: newest proven backup, newest proven daily, "
                                         "newest proven weekly (run r10)",)
    # b010 is not the newest of its month (b009 is): the newest proven monthly is an older proof.
    monthly = [n for n in kept - {"b000", "b010"} if "newest proven monthly" in decisions[n].reasons[0]]
    assert monthly == ["b040"] and not decisions["b120"].keep
    without = {d.name for d in plan_retention(backups, later) if d.keep}
    assert without == {"b000"}  # the same plan without proofs would have deleted every proven backup


def test_the_newest_proven_backup_of_each_class_is_kept() -> None:
    later = NOW + timedelta(days=3 * 365)
    day = NOW.replace(hour=3)
    backups = [("late", day.replace(hour=23)),  # the day's daily (newest of its day), never proven
               ("early", day.replace(hour=1)),  # proven, but not the newest of its day
               ("week-before", day - timedelta(days=8)),  # newest of its day and its ISO week: proven
               ("month-before", (day - timedelta(days=40)).replace(hour=5))]  # proven, newest of its month
    proven = {"early": "run a", "week-before": "run b", "month-before": "run c"}
    decisions = {d.name: d for d in plan_retention(backups, later, proven=proven)}
    assert decisions["early"].keep and "newest proven backup" in decisions["early"].reasons[0]
    assert decisions["week-before"].reasons == (
        "proof kept: newest proven daily, newest proven weekly, newest proven monthly (run b)",)
    assert not decisions["month-before"].keep  # a newer proof stands for its class
    assert {d.name for d in plan_retention(backups[:2] + backups[3:], later, proven=proven) if d.keep} == {
        "late", "early", "month-before"}  # without the week before: the October proof is the newest proven monthly
    assert decisions["late"].keep and decisions["late"].reasons == ("newest backup",)


def test_prune_keeps_the_backup_a_valid_stamp_proves_and_says_so(tmp_path) -> None:
    from dataclasses import replace

    from runbooks_lib.procedures.dr.proof import stamp_backup
    from runbooks_lib.procedures.dr.restore import Check
    from runbooks_lib.procedures.dr.store import BackupStore, Manifest

    seal = _TestSeal()
    store = BackupStore(str(tmp_path), seal=seal)
    manifests = {}
    for days in (800, 900, 1000):
        taken = NOW - timedelta(days=days)
        name = f"veza_db-{taken:%Y%m%d}"
        manifest = Manifest(name=name, database="veza_db", taken_at=taken.isoformat(), finished_at=taken.isoformat(),
                            source_lsn="0/1", source_time=taken.isoformat(), size=1, plain_size=1, sha256="0" * 64,
                            row_counts={}, marker=name, transit={}, tool_versions={}, duration_s=1.0)
        manifests[days] = replace(manifest, authentication=seal.sign(manifest.signed_bytes()))
        store.write_text(name, ".manifest.json", manifests[days].to_json())
        store.write_text(name, ".dump.enc", "x")
    stamp_backup(store, manifests[900], seal, run_id="run-proof", scenario="restore",
                 checks=[Check("row counts per table", True, "equal")], restore_s=2.0, rows=5)
    forged = tmp_path / f"{manifests[1000].name}.proofs.jsonl"  # a stamp nobody signed proves nothing
    forged.write_text((tmp_path / f"{manifests[900].name}.proofs.jsonl").read_text()
                      .replace(manifests[900].name, manifests[1000].name))
    done = prune_backups(store, NOW, apply=True).set_index("backup")
    assert done.loc[manifests[800].name, "action"] == "keep"  # the newest backup
    assert done.loc[manifests[900].name, "action"] == "keep" and "run run-proof" in done.loc[manifests[900].name, "why"]
    assert done.loc[manifests[1000].name, "action"] == "deleted"
    assert not any(manifests[1000].name in f for f in store.files())  # its stamps went with it

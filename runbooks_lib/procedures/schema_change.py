"""The schema change a deploy or a rollback brings: which migrations, a backup first, the record.

``SchemaChange`` is what ``DeployRun`` and ``RollbackRun`` call (runbooks_lib.platform.migrations does
the SQL). A deploy applies the migrations its release needs, after a backup through the DR
library. A rollback across expand migrations goes ahead (the older release runs on them); across
a contract migration it is refused (exit 2) with the ways out, unless the operator asked for the
down migrations, which then run after a fresh backup. Each record lists the migrations applied or
reverted (note ``schema``) and the backup taken first (note ``backup``); a refused rollback says
``blocked_by_migration`` (the contract migration's number), which the delivery metrics count.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import CheckFailed, ParameterError, RunbookError
from ..platform.migrations import (Applied, Migration, Migrator, Outcome, blocking_contracts, load_migrations, pending_for,
                         schema_for, to_revert_for)

if TYPE_CHECKING:
    import pandas as pd

    from ..run.context import RunContext
    from .dr.store import Manifest

__all__ = ["SchemaChange"]


class SchemaChange:
    """veza_db's migrations between what runs and what a run is going to."""

    def __init__(self, ctx: "RunContext", service: str, *, dry_run: bool = False) -> None:
        from ..records.secret import SecretValue

        profile = ctx.profile
        assert profile is not None
        self.ctx = ctx
        self.profile = profile
        self.service = service
        self.dry_run = dry_run
        settings = profile.migrations
        self.enabled = settings is not None and settings.service == service
        self.migrations: list[Migration] = load_migrations(profile) if self.enabled else []
        dsn = profile.database.primary_dsn
        if self.enabled and dsn is None:
            raise ParameterError(f"profile {profile.name}: {service} ships migrations but database.primary_dsn is not set")
        self.dsn = SecretValue(dsn.get_secret_value(), name="primary_dsn") if dsn is not None else None
        self.migrator = Migrator(self.dsn or "", self.migrations, run_id=ctx.run_id, dry_run=dry_run)
        self._applied: dict[int, Applied] | None = None
        self.backup: "Manifest | None" = None
        self.to_revert: list[Applied] = []

    def applied(self, refresh: bool = False) -> dict[int, Applied]:
        if not self.enabled:
            return {}
        if self._applied is None or refresh:
            self._applied = self.migrator.applied()
        return self._applied

    def schema(self, version: str | None) -> int:
        return schema_for(self.profile, version)

    # -- deploy ----------------------------------------------------------------------------

    def pending(self, version: str) -> list[Migration]:
        return pending_for(self.migrations, self.applied(), self.schema(version)) if self.enabled else []

    def to_run_for_deploy(self, version: str) -> str:
        """The migrations a deploy of ``version`` will run before its rollout, each with the hash of
        its SQL: what an approver approves (and a resume must find unchanged)."""
        pending = self.pending(version)
        if not pending:
            return "database migrations: none will run"
        return "database migrations that will run before the rollout: " + "; ".join(
            f"{m.label} ({m.kind}) up, sql sha256 {m.checksum[:16]}" for m in pending)

    def to_run_for_rollback(self) -> str:
        """The down migrations a rollback will run (planned by plan_rollback), each with its SQL's hash."""
        import hashlib

        reverts = list(self.to_revert or [])
        if not reverts:
            return "database migrations: none will run"
        by_number = self.migrator.by_number
        return "database migrations that will be reverted before the rollback: " + "; ".join(
            f"{a.label} down, sql sha256 {hashlib.sha256((by_number[a.number].down or '').encode()).hexdigest()[:16]}"
            for a in reverts)

    def checklist_item(self, version: str) -> tuple[bool | None, str]:
        """The checklist's row: the pending migrations, and for production whether staging ran them."""
        if not self.enabled:
            return None, f"{self.service}'s releases ship no database migrations"
        pending = self.pending(version)
        if not pending:
            return True, f"none pending: veza_db already has schema {self.schema(version)} that {version} needs"
        listed = ", ".join(m.describe() for m in pending)
        if self.ctx.env != "production":
            return True, f"{listed}: to apply before the rollout (staging's checked for production only)"
        try:
            staging = _staging_applied(self.service)
        except RunbookError as e:
            return False, f"{listed}; cannot read staging's schema_migrations: {e}"
        missing = [m.label for m in pending if m.number not in staging]
        return (not missing, f"{listed}; " + (f"staging has not run {', '.join(missing)}" if missing
                                              else "staging already ran them"))

    def apply_for(self, version: str) -> "pd.DataFrame":
        """Back up, then apply each pending migration in its own transaction, verified; dry run shows the SQL."""
        if not self.enabled:
            return _table([], f"{self.service}'s releases ship no database migrations")
        pending = self.pending(version)
        if not pending:
            return _table([], f"no migration pending: veza_db has the schema {version} needs ({self.schema(version)})")
        if not self.dry_run:
            self.take_backup(f"applying {', '.join(m.label for m in pending)}")
        done: list[Outcome] = []
        try:
            for migration in pending:
                done.append(self._show(self.migrator.apply(migration, backup=self.backup.name if self.backup else None)))
        finally:
            self._note("applied", done)
        self._confirm(lambda applied: all(m.number in applied for m in pending), "applied")
        return _table(done)

    # -- rollback --------------------------------------------------------------------------

    def plan_rollback(self, current: str | None, target: str | None, *, run_down_migrations: bool,
                      what: str) -> str:
        """The migrations between ``current`` and ``target``; a refusal (exit 2) across a contract one
        unless ``run_down_migrations``, then they are planned for ``revert``."""
        if not self.enabled:
            return ""  # this service's releases ship no migrations: nothing to say
        applied = self.applied()
        schema = self.schema(target)
        newer = [a for n, a in sorted(applied.items()) if n > schema]
        if not newer:
            return f"migrations: none between {current} and {target} (veza_db at schema {max(applied, default=0)})"
        listed = ", ".join(f"{a.label} ({a.kind})" for a in newer)
        blocking = blocking_contracts(applied, schema)
        if not blocking:
            return f"migrations since {target} (schema {schema}): {listed}; all expand: the schema stays, {target} runs on it"
        if not run_down_migrations:
            self.ctx.figure("blocked_by_migration", blocking[0].number)
            raise ParameterError(self._refusal(blocking, current, target, schema, what))
        self.to_revert = to_revert_for(applied, schema)
        missing = [a.label for a in self.to_revert if a.number not in self.migrator.by_number
                   or not self.migrator.by_number[a.number].down]
        if missing:
            raise ParameterError(f"cannot revert {', '.join(missing)}: no down file; restore veza_db from the "
                                 "backup taken before them (notebooks/dr_drill.ipynb, scenario pitr) instead")
        return (f"migrations since {target} (schema {schema}): {listed}; run_down_migrations: a fresh backup, then "
                f"{', '.join(a.label for a in self.to_revert)} reverted (down files, newest first), then the rollback")

    def revert(self) -> "pd.DataFrame | None":
        """Back up, then run the planned down migrations, newest first, one transaction each."""
        if not self.to_revert:
            return None
        if not self.dry_run:
            self.take_backup(f"reverting {', '.join(a.label for a in self.to_revert)}")
        done: list[Outcome] = []
        try:
            for row in self.to_revert:
                done.append(self._show(self.migrator.revert(self.migrator.by_number[row.number])))
        finally:
            self._note("reverted", done)
        self._confirm(lambda applied: not any(a.number in applied for a in self.to_revert), "reverted")
        return _table(done)

    def _refusal(self, blocking: list[Applied], current: str | None, target: str | None, schema: int, what: str) -> str:
        first = blocking[0]
        when = f" at {first.applied_at:%Y-%m-%d %H:%M:%S} UTC" if first.applied_at else ""
        by = f" by run {first.applied_by}" if first.applied_by else ""
        applied = f" (applied{by}{when})" if by or when else ""
        pitr = self._pitr_way_out(first)
        return (f"refusing {what}: veza_db has contract migration {', '.join(a.label for a in blocking)}{applied}, "
                f"which {target} (schema {schema}) cannot read: it changes what {target} reads or writes, so its "
                f"pods would fail their readiness. Ways out: (1) roll forward: deploy a fixed "
                f"version newer than {current}; (2) revert it: -p run_down_migrations True (a fresh backup is taken "
                f"first, then the down migrations run, newest first, then the rollback); (3) {pitr}")

    def _pitr_way_out(self, migration: Applied) -> str:
        """The DR runbook's point-in-time restore to the backup taken just before ``migration``."""
        from ..platform.vault import Vault
        from .dr.store import BackupStore, VaultSeal

        if not migration.backup:
            return "restore veza_db to a time before it was applied (notebooks/dr_drill.ipynb -p scenario pitr -p target_time <time>)"
        taken = ""
        try:
            settings = self.profile.backups
            seal = VaultSeal(Vault(self.profile.vault), settings)  # a time to restore to, from an authentic manifest
            manifest = BackupStore(settings.url or "", settings.storage_options, seal).manifest(migration.backup)
            taken = manifest.taken.strftime("%Y-%m-%dT%H:%M:%SZ")
        except (RunbookError, OSError, ValueError):
            pass
        target = taken or (migration.applied_at.strftime("%Y-%m-%dT%H:%M:%SZ") if migration.applied_at else "<time>")
        return (f"restore veza_db to before it, from backup {migration.backup}" + (f" taken {taken}" if taken else "")
                + f": the DR runbook's point-in-time recovery to that time, notebooks/dr_drill.ipynb -p scenario pitr "
                f"-p target_time {target}, proves it in a scratch instance before the guide's restore")

    # -- shared ----------------------------------------------------------------------------

    def take_backup(self, why: str) -> "Manifest":
        """A full backup through the DR library, named in the record before anything changes."""
        from tqdm import tqdm

        from .dr.backups import take_backup
        from ..platform.vault import Vault

        if not self.profile.backups.url:
            raise CheckFailed(f"profile {self.profile.name} names no backups.url: no backup, so no migration")
        assert self.dsn is not None
        with tqdm(desc="backup before the migrations", unit="B", unit_scale=True) as bar:
            self.backup = take_backup(self.dsn, Vault(self.profile.vault), self.profile.backups, progress=bar)
        self.ctx.note("backup", f"{self.backup.name} (taken {self.backup.taken_at}, {self.backup.size} bytes) "
                                f"before {why}")
        print(f"backup {self.backup.name} taken ({self.backup.size} bytes, {self.backup.duration_s:.1f} s)")
        return self.backup

    def _show(self, outcome: Outcome) -> Outcome:
        verb = {"up": "apply", "down": "revert"}[outcome.direction]
        if outcome.dry_run:
            print(f"dry run: would {verb} {outcome.migration.describe()}:")
            for statement in outcome.statements:
                print(f"    {statement};")
        else:
            checks = ", ".join(c for c, _ in outcome.checks)
            print(f"{'applied' if verb == 'apply' else 'reverted'} {outcome.migration.describe()} in "
                  f"{outcome.seconds:.2f} s" + (f" (verified: {checks})" if checks else ""))
        return outcome

    def _note(self, verb: str, done: list[Outcome]) -> None:
        if not done or self.dry_run:
            return
        self.ctx.note("schema", f"{verb} " + ", ".join(o.migration.describe() for o in done)
                      + (f" after backup {self.backup.name}" if self.backup else ""))
        self.ctx.figure(f"migrations_{verb}", len(done))

    def _confirm(self, holds: Any, verb: str) -> None:
        if self.dry_run:
            return
        if not holds(self.applied(refresh=True)):
            raise CheckFailed(f"schema_migrations does not show the migrations {verb}: {sorted(self.applied())}")


def _staging_applied(service: str) -> dict[int, Applied]:
    from ..config.profiles import load_profile
    from ..records.secret import SecretValue

    staging = load_profile("staging")
    if staging.database.primary_dsn is None:
        raise CheckFailed("the staging profile names no database.primary_dsn")
    return Migrator(SecretValue(staging.database.primary_dsn.get_secret_value()), []).applied()


def _table(done: list[Outcome], empty: str = "") -> "pd.DataFrame":
    import pandas as pd

    if not done:
        return pd.DataFrame([{"migration": "(none)", "detail": empty}]).set_index("migration")
    return pd.DataFrame([o.row() for o in done]).set_index("migration")

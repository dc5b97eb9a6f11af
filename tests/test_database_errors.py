"""No psycopg error leaves a public function, also when the query fails after the connection succeeded.

A real PostgreSQL 15 (and a real OpenBao for the backup's data key), as the sandbox runs them. Two
roles connect fine and are then refused: ``readonly`` (every transaction read-only) and ``nobody``
(no privilege on schema_migrations). Each public function must raise the project's error, saying
what it was doing, never psycopg's, and a backup refused half-way must keep nothing.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from runbooks_lib.config.profiles import BackupSettings, VaultAuth, VaultSettings
from runbooks_lib.errors import BackendUnavailable, CheckFailed, RunbookError
from runbooks_lib.platform.database import replication_status, sql_errors
from runbooks_lib.platform.migrations import Migrator, parse_migrations
from runbooks_lib.platform.vault import Vault
from runbooks_lib.procedures.dr.backups import take_backup
from runbooks_lib.procedures.dr.postgres import write_and_read
from runbooks_lib.procedures.dr.store import BackupStore

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

MIGRATION = {"0002_add_bpm.up.sql": "-- kind: expand\nALTER TABLE tracks ADD COLUMN bpm integer;",
             "0002_add_bpm.down.sql": "ALTER TABLE tracks DROP COLUMN bpm;"}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    from runbooks_sandbox.servers import OpenBaoServer, PostgresCluster

    state = Path(tempfile.mkdtemp(prefix="veza-dberrors-"))
    postgres = PostgresCluster(state, with_standby=False).start()
    openbao = OpenBaoServer(state).start()
    try:
        openbao.seed(("sandbox",), database_urls={"sandbox": postgres.primary_dsn})
        with psycopg.connect(postgres.primary_dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text, kind text, "
                         "checksum text, applied_at timestamptz DEFAULT now(), applied_by text, backup text)")
            conn.execute("CREATE ROLE readonly LOGIN")
            conn.execute("ALTER ROLE readonly SET default_transaction_read_only = on")
            conn.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO readonly")
            conn.execute("CREATE ROLE nobody LOGIN")
        base = postgres.primary_dsn
        yield {"dsn": base, "readonly": base.replace("postgres@", "readonly@"),
               "nobody": base.replace("postgres@", "nobody@"), "vault": openbao.address,
               "token": openbao.root_token or "", "store": str(state / "offsite")}
    finally:
        openbao.stop()
        postgres.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_the_translator_sorts_unreachable_from_refused(servers: dict[str, str]) -> None:
    with pytest.raises(CheckFailed, match=r"^read a table: UndefinedTable: relation \"nowhere\" does not exist"):
        with sql_errors("read a table"), psycopg.connect(servers["dsn"]) as conn:
            conn.execute("SELECT * FROM nowhere")
    closed = servers["dsn"].rsplit(":", 1)[0] + ":9/veza_db"
    with pytest.raises(BackendUnavailable, match="^connect: PostgreSQL unreachable"):
        with sql_errors("connect"):
            psycopg.connect(closed, connect_timeout=2)


def test_migrations_refused_after_connecting_are_the_projects_errors(servers: dict[str, str]) -> None:
    migration = parse_migrations(MIGRATION)[0]
    with pytest.raises(CheckFailed, match="^read schema_migrations: InsufficientPrivilege"):
        Migrator(servers["nobody"], [migration]).applied()
    with pytest.raises(CheckFailed) as refused:
        Migrator(servers["readonly"], [migration]).apply(migration)
    message = str(refused.value)
    assert re.match(r"migration 0002\S* \(up\) failed at ", message), message
    assert "ReadOnlySqlTransaction" in message and "rolled back, the schema is as before" in message


def test_a_backup_whose_marker_write_is_refused_keeps_nothing(servers: dict[str, str]) -> None:
    vault = Vault(VaultSettings(address=servers["vault"], auth=VaultAuth(token=servers["token"]),  # type: ignore[arg-type]
                                path="secret/veza/sandbox"))
    settings = BackupSettings(url=servers["store"])
    with pytest.raises(CheckFailed, match="write its marker row: ReadOnlySqlTransaction"):
        take_backup(servers["readonly"], vault, settings)
    assert BackupStore(servers["store"]).list() == []


def test_dr_checks_refused_after_connecting_are_the_projects_errors(servers: dict[str, str]) -> None:
    with pytest.raises(CheckFailed, match="^write and read on the recovered database: ReadOnlySqlTransaction"):
        write_and_read(servers["readonly"])
    status = replication_status(servers["nobody"], None)  # a role that may not read it: not reachable, no crash
    assert status.primary_reachable in (True, False) and not status.healthy


def test_no_error_leaks_the_dsn(servers: dict[str, str]) -> None:
    secret = servers["readonly"].replace("readonly@", "readonly:pw-not-shown@")
    with pytest.raises(RunbookError) as raised:
        write_and_read(secret)
    assert "pw-not-shown" not in str(raised.value)

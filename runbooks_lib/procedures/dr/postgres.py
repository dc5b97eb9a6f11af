"""PostgreSQL's client programs (pg_dump, pg_restore, pg_amcheck, pg_basebackup) for the drills.

Connection settings reach the programs through libpq's environment (PGHOST, PGPASSWORD...),
never through their command line, where any user of the machine could read a password.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ...errors import BackendUnavailable, CheckFailed
from ...platform.database import connect, sql_errors
from ...records.secret import SecretValue

__all__ = ["tool", "tool_version", "libpq_env", "with_database", "run_tool", "sql_errors", "write_and_read",
           "DEFAULT_BIN_DIRS"]

DEFAULT_BIN_DIRS = ("/usr/lib/postgresql/15/bin",)
_ENV_KEYS = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
             "dbname": "PGDATABASE", "sslmode": "PGSSLMODE", "connect_timeout": "PGCONNECT_TIMEOUT"}


def tool(name: str, bin_dir: str | None = None) -> str:
    """Path of a PostgreSQL program: the profile's folder, the server's major version's, PATH."""
    for folder in ([bin_dir] if bin_dir else []) + list(DEFAULT_BIN_DIRS):
        path = Path(folder) / name
        if os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found is None:
        raise CheckFailed(f"{name} not found (install postgresql-client-15, or set backups.pg_bin_dir)")
    return found


def tool_version(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    return out.rsplit(" ", 1)[-1] if out else "unknown"


def _clear(dsn: str | SecretValue) -> str:
    return dsn.reveal() if isinstance(dsn, SecretValue) else str(dsn)


def with_database(dsn: str | SecretValue, dbname: str) -> str:
    """The same server and credentials, another database."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(_clear(dsn))
    params["dbname"] = dbname
    return make_conninfo(**params)


def libpq_env(dsn: str | SecretValue) -> dict[str, str]:
    """The process environment for a client program connecting with ``dsn``."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(_clear(dsn))
    unknown = set(params) - set(_ENV_KEYS)
    if unknown:
        raise CheckFailed(f"DSN options not passed to the client programs: {', '.join(sorted(unknown))}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({_ENV_KEYS[key]: str(value) for key, value in params.items()})
    return env


def run_tool(argv: list[str], dsn: str | SecretValue, timeout: float = 3600, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a client program against ``dsn``; a failure is CheckFailed with its last lines."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=libpq_env(dsn), timeout=timeout,
                                stdin=subprocess.DEVNULL, **kwargs)
    except subprocess.TimeoutExpired as e:
        raise BackendUnavailable(f"{Path(argv[0]).name} did not finish in {timeout:.0f} s") from e
    if result.returncode != 0:
        raise CheckFailed(f"{Path(argv[0]).name} failed (exit {result.returncode}): {last_lines(result.stderr)}")
    return result


def last_lines(text: str, count: int = 3) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return " | ".join(re.sub(r"\s+", " ", line) for line in lines[-count:]) or "(no output)"


@sql_errors("write and read on the recovered database")
def write_and_read(dsn: str | SecretValue) -> bool:
    """A row written and read back: the proof a recovered database serves writes."""
    with connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS dr_verify (id bigserial PRIMARY KEY, note text)")
        wrote = conn.execute("INSERT INTO dr_verify (note) VALUES ('drill') RETURNING id").fetchone()[0]
        return conn.execute("SELECT note FROM dr_verify WHERE id = %s", (wrote,)).fetchone()[0] == "drill"

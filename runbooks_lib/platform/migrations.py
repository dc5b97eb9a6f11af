"""veza_db's schema migrations, tied to the release that ships them and to its rollback.

Migrations are plain SQL files as golang-migrate keeps them, ``NNNN_name.up.sql`` and
``NNNN_name.down.sql``, in the folder the profile names (``migrations.url``). The up file's
header says what the deploy and rollback runbooks need to know and no migration tool records:

* ``-- kind: expand`` (the previous version still runs against the result: a column, a table,
  an index added) or ``-- kind: contract`` (it does not: a column dropped or renamed, a
  constraint tightened); a rollback below a contract migration is refused unless it is reverted;
* ``-- expects: [no] column|table|index NAME``: the objects the result must (not) have, checked
  inside the migration's own transaction before it commits.

A release says which schema it needs by the newest migration it ships (``schema_for``; in the
sandbox, the image catalog's ``schema``, as an image label would). Applied migrations are rows
of ``schema_migrations``, with the run that applied them and the backup taken just before.

The planning is pure (``pending_for``, ``to_revert_for``, ``blocking_contracts``); ``Migrator``
applies or reverts one migration per transaction, statement by statement so that a failure
names the statement that failed, and in dry run only shows the SQL.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal

from .database import connect, sql_errors, translate
from ..errors import CheckFailed, ParameterError

if TYPE_CHECKING:
    from ..config.profiles import Profile
    from ..records.secret import SecretValue

__all__ = ["Migration", "Expectation", "Applied", "Outcome", "Migrator", "parse_migrations", "split_statements",
           "load_migrations", "schema_for", "pending_for", "to_revert_for", "blocking_contracts", "BASELINE"]

BASELINE = 1  # the schema the database was created with: a version that names none needs this
Kind = Literal["expand", "contract"]
_FILE = re.compile(r"^(\d{1,6})_([A-Za-z0-9_]+)\.(up|down)\.sql$")
_KIND = re.compile(r"^--\s*kind:\s*(\S+)\s*$", re.M)
_EXPECTS = re.compile(r"^--\s*expects:\s*(no\s+)?(column|table|index)\s+([A-Za-z_][A-Za-z0-9_.]*)\s*$", re.M)


@dataclass(frozen=True)
class Expectation:
    """An object the schema must have (or, ``present=False``, must not have) after a migration."""

    what: Literal["column", "table", "index"]
    name: str
    present: bool = True

    def __str__(self) -> str:
        return f"{'' if self.present else 'no '}{self.what} {self.name}"

    def query(self) -> tuple[str, tuple[str, ...]]:
        """A query answering one boolean: does the object exist (in the public schema)?"""
        if self.what == "column":
            table, _, column = self.name.partition(".")
            return ("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' "
                    "AND table_name = %s AND column_name = %s)", (table, column))
        if self.what == "index":
            return "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'public' AND indexname = %s)", (self.name,)
        return ("SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_name = %s)", (self.name,))


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    kind: Kind
    up: str
    down: str | None
    expects: tuple[Expectation, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.number:04d}_{self.name}"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.up.encode()).hexdigest()[:16]

    def describe(self) -> str:
        return f"{self.label} ({self.kind})"


@dataclass(frozen=True)
class Applied:
    """A row of ``schema_migrations``."""

    number: int
    name: str
    kind: str
    applied_at: datetime | None = None
    applied_by: str | None = None
    backup: str | None = None

    @property
    def label(self) -> str:
        return f"{self.number:04d}_{self.name}"


@dataclass
class Outcome:
    """What one apply or revert did (or, in dry run, would do)."""

    migration: Migration
    direction: Literal["up", "down"]
    statements: list[str]
    checks: list[tuple[str, bool]] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False

    def row(self) -> dict[str, Any]:
        return {"migration": self.migration.label, "kind": self.migration.kind, "direction": self.direction,
                "statements": len(self.statements), "verified": ", ".join(f"{c} {'✓' if ok else '✗'}" for c, ok in self.checks)
                or ("(dry run)" if self.dry_run else "schema_migrations"), "seconds": round(self.seconds, 3)}


# -- files -------------------------------------------------------------------------------

def split_statements(sql: str) -> list[str]:
    """The statements of a SQL script: split on ``;`` outside quotes, dollar quotes and comments."""
    statements, current, i, n = [], [], 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            current.append("\n")
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if ch in "'\"":
            end = i + 1
            while end < n and not (sql[end] == ch and not sql.startswith(ch * 2, end)):
                end += 2 if sql.startswith(ch * 2, end) else 1
            current.append(sql[i:end + 1])
            i = end + 1
            continue
        if ch == "$" and (tag := re.match(r"\$[A-Za-z_]*\$", sql[i:])):
            end = sql.find(tag.group(0), i + len(tag.group(0)))
            end = n if end < 0 else end + len(tag.group(0))
            current.append(sql[i:end])
            i = end
            continue
        if ch == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def parse_migrations(files: dict[str, str]) -> list[Migration]:
    """Migrations from ``{file name: text}``, in order; a malformed folder is a ParameterError."""
    ups: dict[int, tuple[str, str]] = {}
    downs: dict[int, str] = {}
    for filename, text in files.items():
        match = _FILE.match(filename)
        if match is None:
            continue  # a README, a checksum file: not a migration
        number, name, direction = int(match.group(1)), match.group(2), match.group(3)
        if direction == "up":
            if number in ups:
                raise ParameterError(f"two up migrations numbered {number}: {ups[number][0]} and {name}")
            ups[number] = (name, text)
        else:
            downs[number] = text
    migrations = []
    for number in sorted(ups):
        name, text = ups[number]
        kind = _KIND.search(text)
        if kind is None or kind.group(1) not in ("expand", "contract"):
            raise ParameterError(f"migration {number:04d}_{name}: its header needs '-- kind: expand' or '-- kind: contract'")
        expects = tuple(Expectation(what, obj, present=not no) for no, what, obj in _EXPECTS.findall(text))
        migrations.append(Migration(number, name, kind.group(1), text, downs.get(number), expects))  # type: ignore[arg-type]
    return migrations


def load_migrations(profile: "Profile") -> list[Migration]:
    """The migrations in the profile's ``migrations.url`` folder (relative = the project's)."""
    from ..config.paths import project_home

    settings = profile.migrations
    if settings is None:
        return []
    url = settings.url
    if "://" in url and not url.startswith("file://"):
        import fsspec

        fs, root = fsspec.core.url_to_fs(url)
        files = {Path(p).name: fs.cat_file(p).decode() for p in fs.ls(root, detail=False) if p.endswith(".sql")}
    else:
        folder = Path(url.removeprefix("file://"))
        folder = folder if folder.is_absolute() else project_home() / folder
        if not folder.is_dir():
            raise ParameterError(f"migrations.url {url}: no such folder")
        files = {p.name: p.read_text() for p in folder.glob("*.sql")}
    return parse_migrations(files)


def schema_for(profile: "Profile", version: str | None) -> int:
    """The schema a release needs: the newest migration it ships (the image's ``schema`` label; in
    the sandbox, its image catalog). A release that names none predates migrations: the baseline."""
    settings = profile.migrations
    if settings is None or not version:
        return BASELINE
    images = ((profile.sandbox or {}).get("images") or {}).get(settings.service) or {}
    spec = images.get(version) if isinstance(images, dict) else None
    value = spec.get("schema") if isinstance(spec, dict) else None
    return int(value) if value else BASELINE


# -- planning (pure) ---------------------------------------------------------------------

def pending_for(migrations: Iterable[Migration], applied: dict[int, Applied], schema: int) -> list[Migration]:
    """What a deploy to a release needing ``schema`` applies: every migration up to it not yet applied."""
    known = {m.number: m for m in migrations}
    missing = [n for n in range(BASELINE + 1, schema + 1) if n not in applied and n not in known]
    if missing:
        raise ParameterError(f"schema {schema} needs migration(s) {', '.join(map(str, missing))}, "
                             "which the migrations folder does not have")
    return [m for n, m in sorted(known.items()) if n <= schema and n not in applied]


def blocking_contracts(applied: dict[int, Applied], schema: int) -> list[Applied]:
    """The applied contract migrations a release needing ``schema`` cannot run on."""
    return [a for n, a in sorted(applied.items()) if n > schema and a.kind == "contract"]


def to_revert_for(applied: dict[int, Applied], schema: int) -> list[Applied]:
    """What a rollback to a release needing ``schema`` must revert, newest first: every applied
    migration from its oldest blocking contract migration up (down files run in reverse order);
    expand migrations below that stay, since the older release runs on them."""
    blocking = blocking_contracts(applied, schema)
    if not blocking:
        return []
    lowest = blocking[0].number
    return [a for n, a in sorted(applied.items(), reverse=True) if n >= lowest]


# -- the database ------------------------------------------------------------------------

class Migrator:
    """Applies and reverts migrations on one database, one transaction each."""

    def __init__(self, dsn: "str | SecretValue", migrations: Iterable[Migration], *, run_id: str = "",
                 dry_run: bool = False) -> None:
        self.dsn = dsn
        self.by_number = {m.number: m for m in migrations}
        self.run_id = run_id
        self.dry_run = dry_run

    def _connect(self) -> Any:
        return connect(self.dsn)

    def applied(self) -> dict[int, Applied]:
        """The rows of ``schema_migrations`` (empty when the table does not exist yet)."""
        import psycopg

        with sql_errors("read schema_migrations"), self._connect() as conn:
            try:
                rows = conn.execute("SELECT version, name, kind, applied_at, applied_by, backup "
                                    "FROM schema_migrations ORDER BY version").fetchall()
            except psycopg.errors.UndefinedTable:
                return {}
        return {int(r[0]): Applied(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def apply(self, migration: Migration, *, backup: str | None = None) -> Outcome:
        """Run the up file, check its expectations and record it, in one transaction."""
        insert = ("INSERT INTO schema_migrations (version, name, kind, checksum, applied_by, backup) "
                  "VALUES (%s, %s, %s, %s, %s, %s)",
                  (migration.number, migration.name, migration.kind, migration.checksum, self.run_id or None, backup))
        return self._run(migration, "up", migration.up, insert, migration.expects)

    def revert(self, migration: Migration) -> Outcome:
        """Run the down file and delete its row, in one transaction; its expectations must no longer hold."""
        if not migration.down:
            raise CheckFailed(f"migration {migration.label} has no down file: it cannot be reverted; restore the "
                              "database from the backup taken before it instead")
        delete = ("DELETE FROM schema_migrations WHERE version = %s", (migration.number,))
        undone = tuple(Expectation(e.what, e.name, not e.present) for e in migration.expects
                       if e.what != "index" or e.present)  # an index dropped by up need not come back by name
        return self._run(migration, "down", migration.down, delete, undone)

    def _run(self, migration: Migration, direction: Literal["up", "down"], sql: str,
             bookkeeping: tuple[str, tuple[Any, ...]], expects: tuple[Expectation, ...]) -> Outcome:
        import time

        import psycopg

        statements = split_statements(sql)
        outcome = Outcome(migration, direction, statements, dry_run=self.dry_run)
        if self.dry_run:
            return outcome
        began = time.monotonic()
        current = "(connecting)"
        try:
            with self._connect() as conn, conn.transaction():
                # A migration that waits behind a long query must give up, not queue every writer behind it.
                conn.execute("SET LOCAL lock_timeout = '5s'")
                for number, current in enumerate(statements, 1):
                    conn.execute(current.encode())
                current = "(checking the expected objects)"
                for expectation in expects:
                    query, params = expectation.query()
                    found = bool(conn.execute(query, params).fetchone()[0])
                    outcome.checks.append((str(expectation), found == expectation.present))
                failed = [c for c, ok in outcome.checks if not ok]
                if failed:
                    raise CheckFailed(f"migration {migration.label} ({direction}) did not give the expected schema: "
                                      f"{', '.join(failed)} not true; rolled back, nothing changed")
                current = "(recording it in schema_migrations)"
                conn.execute(*bookkeeping)
        except psycopg.Error as e:
            where = f"statement {statements.index(current) + 1} of {len(statements)}" if current in statements else current
            raise translate(e, f"migration {migration.label} ({direction}) failed at {where}: {_shorten(current)} — its "
                               "transaction was rolled back, the schema is as before") from e
        outcome.seconds = time.monotonic() - began
        return outcome


def _shorten(statement: str, limit: int = 300) -> str:
    return statement if len(statement) <= limit else statement[:limit] + " …"

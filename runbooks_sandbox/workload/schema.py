"""The backend's start-up check of veza_db's schema, as the real service checks it before serving.

A version ships migrations up to a number (its ``schema`` in the image catalog) and needs every
one of them applied; a contract migration newer than that number (a column it selects renamed
or dropped) means the schema is one this version cannot read. Either way the pod stays not
ready, with a log line saying why, which is what an on-call engineer sees in ``kubectl logs``.
The check runs once, at start, in the background (liveness answers meanwhile); an unreachable
database is retried, a wrong schema is final. Running pods are not re-checked: a real service
finds out only when a query fails, which is why the runbooks refuse such rollbacks up front.
"""
from __future__ import annotations

import threading
from typing import Callable

__all__ = ["SCHEMA_SERVICES", "SchemaCheck", "schema_problem"]

# The services that own veza_db and check its schema (the others never query it).
SCHEMA_SERVICES = ("veza-backend-api",)
_RETRY_S = 0.5


def schema_problem(needs: int, applied: dict[int, str], version: str) -> str | None:
    """Why ``version`` (which needs migrations 1..``needs``) cannot run on ``applied`` ({number: kind}),
    or None when it can."""
    missing = [n for n in range(1, needs + 1) if n not in applied]
    if missing:
        return (f"schema check failed: veza_db lacks migration(s) {', '.join(map(str, missing))} that {version} "
                f"needs (schema {needs}); apply them before starting this version")
    contract = sorted(n for n, kind in applied.items() if n > needs and kind == "contract")
    if contract:
        return (f"schema check failed: veza_db has contract migration(s) {', '.join(map(str, contract))} that "
                f"{version} (schema {needs}) cannot read; revert them (down migrations) or run a newer version")
    return None


class SchemaCheck:
    """Reads ``schema_migrations`` once the pod starts; ``ok`` says whether this version may serve."""

    def __init__(self, dsn: str, needs: int, version: str, log: Callable[[str], None]) -> None:
        self.dsn = dsn
        self.needs = needs
        self.version = version
        self.log = log
        self.ok = False
        self.problem: str | None = None
        self._stop = threading.Event()

    def start(self) -> "SchemaCheck":
        threading.Thread(target=self._run, name="schema-check", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import psycopg  # in the background: the pod listens (and is live) before this import

        told = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, connect_timeout=2, autocommit=True) as conn:
                    rows = conn.execute("SELECT version, kind FROM schema_migrations").fetchall()
            except psycopg.errors.UndefinedTable:
                rows = []
            except psycopg.Error as e:
                if not told:  # once: a long outage must not fill the pod's log
                    self.log(f"schema check: veza_db unreachable ({type(e).__name__}); retrying")
                    told = True
                self._stop.wait(_RETRY_S)
                continue
            self.problem = schema_problem(self.needs, {int(v): str(k) for v, k in rows}, self.version)
            if self.problem is None:
                self.ok = True
                self.log(f"schema check: veza_db has the migrations {self.version} needs (schema {self.needs})")
            else:
                self.log(self.problem)
            return

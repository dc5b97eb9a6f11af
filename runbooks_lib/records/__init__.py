"""Records you can trust: secrets kept out, a tamper-evident ledger, a catalog, HTML exports.

Importing this package is cheap; heavy modules (nbformat, nbconvert, pandas) load on use.

This package is where the leaves are wired together, so that none imports another upward:
a ``SecretValue`` registers itself with the redaction registry, and a registration turns
the kernel's output filters on. Python imports this file before any of its modules, so the
wiring is in place whenever a SecretValue can be created.
"""
from __future__ import annotations

from . import kernel, secret
from .redaction import MASK, is_secret_name, on_register, redact, register_secret
from .secret import SecretValue

secret.use_registrar(register_secret)
on_register(kernel.install_filters)

__all__ = ["MASK", "SecretValue", "register_secret", "redact", "is_secret_name", "install_filters",
           "summaries", "seal_record", "Ledger", "Catalog"]


def install_filters() -> bool:
    """Install the kernel's redaction filters now (start() does it too). False outside IPython."""
    return kernel.install_filters()


def __getattr__(name: str):  # lazy: these pull nbformat/nbconvert/pandas
    if name in ("summaries", "Catalog"):
        from . import catalog

        return getattr(catalog, name)
    if name == "seal_record":
        from .seal import seal_record

        return seal_record
    if name == "Ledger":
        from .ledger import Ledger

        return Ledger
    raise AttributeError(f"module 'runbooks_lib.records' has no attribute {name!r}")

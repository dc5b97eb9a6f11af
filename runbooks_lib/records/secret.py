"""``SecretValue``: a secret that shows itself as ``********`` wherever it is printed.

A value read from Vault or a Kubernetes Secret is wrapped in this type, so ``print(value)``,
a notebook's last-expression display, a DataFrame cell, an f-string or a traceback's
``repr`` all show the mask. The clear value is only reachable through ``.reveal()``, for the
API call that needs it; the value is also registered with the redaction registry, so even
a revealed copy that ends up in an output is filtered before it reaches the record.

A leaf: this module imports nothing of the project. The registry plugs itself in with
``use_registrar`` (``records/__init__`` wires it, so it is in place whenever this class can
be imported), and a value created before that has nothing to be registered with anyway.
"""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["SecretValue", "MASK", "use_registrar"]

MASK = "********"

_registrar: Callable[[str], None] | None = None


def use_registrar(register: Callable[[str], None]) -> None:
    """Register every SecretValue created from now on with ``register`` (the redaction registry)."""
    global _registrar
    _registrar = register


class SecretValue:
    """A string secret whose repr, str, format and HTML are masked."""

    __slots__ = ("_value", "name")

    def __init__(self, value: str, name: str | None = None, *, register: bool = True) -> None:
        if isinstance(value, SecretValue):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError(f"SecretValue holds a str, not {type(value).__name__}")
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "name", name)
        if register and _registrar is not None:
            _registrar(value)

    def reveal(self) -> str:
        """The clear value, for the one call that needs it (an API client, a DSN)."""
        return self._value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("SecretValue is immutable")

    def __repr__(self) -> str:
        label = f"{self.name}=" if self.name else ""
        return f"SecretValue({label}{MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def _repr_html_(self) -> str:
        return f"<code>{MASK}</code>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SecretValue):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("SecretValue", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self) -> Any:
        # Pickling would write the clear value to wherever the pickle goes (a cache, a queue).
        raise TypeError("a SecretValue cannot be pickled; pass .reveal() explicitly if you must")

"""The cluster network's errors: each message says what to do."""
from __future__ import annotations

from ..servers.ports import ServerError

__all__ = ["NetworkError", "NamespacesNotPermitted", "NamespaceBusy", "AddressesExhausted", "ForwardError"]


class NetworkError(ServerError):
    """The cluster network could not be created, changed or removed."""


class NamespacesNotPermitted(NetworkError):
    """This machine (or user) may not create network namespaces: the sandbox cannot give pods addresses."""


class NamespaceBusy(NetworkError):
    """Processes still run inside the namespace that was asked to be deleted."""

    def __init__(self, message: str, pids: dict[int, list[str]]) -> None:
        super().__init__(message)
        self.pids = pids


class AddressesExhausted(NetworkError):
    """Every address of a range is allocated."""


class ForwardError(NetworkError):
    """A forwarding rule is invalid, or could not be put in place."""

"""API errors that know their wire format: a Kubernetes ``Status`` body and an HTTP code.

The store raises these; the HTTP layer renders ``error.status()`` unchanged, so the official
client raises its real ``ApiException`` with the reason and code a cluster would give.
"""
from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A failed API call; ``code`` is the HTTP status, ``reason`` the Status reason."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        """The ``Status`` object a Kubernetes API server returns for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(kind: str, name: str | None, group: str = "") -> dict[str, Any]:
    details: dict[str, Any] = {"kind": kind}
    if name is not None:
        details["name"] = name
    if group:
        details["group"] = group
    return details


class BadRequest(ApiError):
    code = 400
    reason = "BadRequest"


class NotFound(ApiError):
    code = 404
    reason = "NotFound"

    @classmethod
    def of(cls, plural: str, name: str, group: str = "") -> NotFound:
        qualified = f"{plural}.{group}" if group else plural
        return cls(f'{qualified} "{name}" not found', details=_details(plural, name, group))


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class AlreadyExists(ApiError):
    code = 409
    reason = "AlreadyExists"

    @classmethod
    def of(cls, plural: str, name: str, group: str = "") -> AlreadyExists:
        qualified = f"{plural}.{group}" if group else plural
        return cls(f'{qualified} "{name}" already exists', details=_details(plural, name, group))


class Conflict(ApiError):
    code = 409
    reason = "Conflict"

    @classmethod
    def stale(cls, plural: str, name: str, group: str = "") -> Conflict:
        qualified = f"{plural}.{group}" if group else plural
        return cls(
            f'Operation cannot be fulfilled on {qualified} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            details=_details(plural, name, group),
        )


class Gone(ApiError):
    """410 for a watch or list from a resourceVersion older than the kept history."""

    code = 410
    reason = "Expired"


class UnsupportedMediaType(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(ApiError):
    code = 422
    reason = "Invalid"

    @classmethod
    def field(cls, kind: str, name: str | None, field: str, message: str) -> Invalid:
        details = _details(kind, name)
        details["causes"] = [{"reason": "FieldValueInvalid", "message": message, "field": field}]
        return cls(f'{kind} "{name or ""}" is invalid: {field}: {message}', details=details)


class Forbidden(ApiError):
    code = 403
    reason = "Forbidden"


class ServiceUnavailable(ApiError):
    """The server refused the request before handling it (overloaded): nothing was applied."""

    code = 503
    reason = "ServiceUnavailable"

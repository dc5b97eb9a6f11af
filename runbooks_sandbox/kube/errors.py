"""API errors built from the real API server's ``Status`` bodies (code, reason, message, details).

:func:`ApiError.from_response` picks the class by the Status ``reason`` first (409 is both
AlreadyExists and Conflict) and the HTTP code second, so callers catch what they mean:
``except NotFound``, ``except Conflict``; each carries ``code``, ``reason``, ``message`` and
``details`` (``status()`` gives the Status body back).

:class:`Unreachable` is not an answer of the server: the connection failed or timed out, and a
write may or may not have been applied.
"""
from __future__ import annotations

import json
from typing import Any

__all__ = [
    "ApiError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "UnsupportedMediaType",
    "Invalid",
    "TooManyRequests",
    "InternalError",
    "ServiceUnavailable",
    "Timeout",
    "Unreachable",
]


class ApiError(Exception):
    """A failed API call; ``code`` is the HTTP status, ``reason`` the Status reason."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, code: int | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code
        if reason is not None:
            self.reason = reason

    def status(self) -> dict[str, Any]:
        """The ``Status`` object an API server returns for this error."""
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body

    @staticmethod
    def from_response(code: int, body: bytes | str) -> "ApiError":
        """The error a response of HTTP ``code`` with ``body`` (a Status, or any text) stands for."""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            status = json.loads(text)
        except ValueError:
            status = None
        if not isinstance(status, dict) or status.get("kind") != "Status":
            return _class_for(code, "")(text.strip() or f"HTTP {code}", code=code)
        reason = str(status.get("reason") or "")
        details = status.get("details") if isinstance(status.get("details"), dict) else None
        cls = _class_for(int(status.get("code") or code), reason)
        return cls(str(status.get("message") or f"HTTP {code}"), details=details,
                   code=int(status.get("code") or code), reason=reason or None)


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


class Unauthorized(ApiError):
    """401: the credentials were not accepted (an expired token, a cert of another CA)."""

    code = 401
    reason = "Unauthorized"


class Forbidden(ApiError):
    """403: authenticated, but RBAC (or the Node authorizer, or an admission plugin) said no."""

    code = 403
    reason = "Forbidden"


class NotFound(ApiError):
    code = 404
    reason = "NotFound"

    @classmethod
    def of(cls, plural: str, name: str, group: str = "") -> "NotFound":
        qualified = f"{plural}.{group}" if group else plural
        return cls(f'{qualified} "{name}" not found', details=_details(plural, name, group))


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class AlreadyExists(ApiError):
    code = 409
    reason = "AlreadyExists"

    @classmethod
    def of(cls, plural: str, name: str, group: str = "") -> "AlreadyExists":
        qualified = f"{plural}.{group}" if group else plural
        return cls(f'{qualified} "{name}" already exists', details=_details(plural, name, group))


class Conflict(ApiError):
    """409 Conflict: a stale resourceVersion, a failed precondition (uid), a field manager conflict."""

    code = 409
    reason = "Conflict"


class Gone(ApiError):
    """410: a watch or list from a resourceVersion older than etcd keeps (reason Expired or Gone)."""

    code = 410
    reason = "Expired"


class UnsupportedMediaType(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(ApiError):
    code = 422
    reason = "Invalid"


class TooManyRequests(ApiError):
    code = 429
    reason = "TooManyRequests"


class InternalError(ApiError):
    code = 500
    reason = "InternalError"


class ServiceUnavailable(ApiError):
    """503: the server refused the request before handling it (starting, overloaded)."""

    code = 503
    reason = "ServiceUnavailable"


class Timeout(ApiError):
    """504, or reason Timeout: the server gave up waiting (on etcd, on a webhook)."""

    code = 504
    reason = "Timeout"


class Unreachable(ApiError):
    """No answer: the connection was refused, broke or timed out (a write may have been applied)."""

    code = 0
    reason = "Unreachable"


_BY_REASON: dict[str, type[ApiError]] = {
    "AlreadyExists": AlreadyExists, "Conflict": Conflict, "NotFound": NotFound, "Invalid": Invalid,
    "Forbidden": Forbidden, "Unauthorized": Unauthorized, "BadRequest": BadRequest, "Expired": Gone,
    "Gone": Gone, "MethodNotAllowed": MethodNotAllowed, "UnsupportedMediaType": UnsupportedMediaType,
    "TooManyRequests": TooManyRequests, "ServiceUnavailable": ServiceUnavailable, "Timeout": Timeout,
    "ServerTimeout": Timeout, "InternalError": InternalError,
}
_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed, 409: Conflict,
    410: Gone, 415: UnsupportedMediaType, 422: Invalid, 429: TooManyRequests, 500: InternalError,
    503: ServiceUnavailable, 504: Timeout,
}


def _class_for(code: int, reason: str) -> type[ApiError]:
    return _BY_REASON.get(reason) or _BY_CODE.get(code) or ApiError

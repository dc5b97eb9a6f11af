"""Sending an API request again when the API server could not serve it, and only then.

An API server under load or changing leader refuses requests for a few seconds: 429 (priority and
fairness) or 503 (overloaded), answered *before* the request is handled, so nothing was applied
and any request may be sent again. A 500, 502 or 504, a dropped connection or a timeout may come
after a write was applied: only reads (GET, HEAD) are sent again then; a write fails at once
and the runbook's own step decides (a rollout step reads the Deployment back, a rollback rolls back).
This is client-go's rule (``rest.Request`` retries after a Retry-After); the official Python
client applies it to reads only, and only when asked.

Waits grow 0.1 s, 0.2 s, 0.4 s... up to 2 s, or what the server's Retry-After says (up to 5 s),
until the profile's ``cluster.retry_for_s`` is spent. Every retry is printed with its cause, and
counted: the run's summary carries the count as the figure ``api_server_retries``.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

__all__ = ["RetryPolicy", "with_retries", "retries_made", "count_retry", "say_retry"]

REFUSED = frozenset({429, 503})  # not handled: safe to send again whatever the method
READ_AGAIN = frozenset({500, 502, 504})  # maybe handled: reads only
READS = frozenset({"GET", "HEAD"})

_count = 0
_count_lock = threading.Lock()


def count_retry() -> None:
    global _count
    with _count_lock:
        _count += 1


def retries_made() -> int:
    """How many requests this process has sent again (for the run's figures)."""
    return _count


@dataclass(frozen=True)
class RetryPolicy:
    budget_s: float = 20.0  # give up once the next wait would end after this long
    first_wait_s: float = 0.1
    max_wait_s: float = 2.0
    max_retry_after_s: float = 5.0

    def wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after_s)
        return min(self.first_wait_s * 2 ** attempt, self.max_wait_s)


def _retry_after(headers: Any) -> float | None:
    try:
        value = (headers or {}).get("Retry-After")
        return float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def _why_again(method: str, outcome: Any) -> tuple[str, float | None] | None:
    """Why the request may be sent again (and the server's Retry-After), or None when it may not."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    status = getattr(outcome, "status", None)
    if isinstance(outcome, ApiException) or (status is not None and not isinstance(outcome, BaseException)):
        headers = getattr(outcome, "headers", None)
        if status in REFUSED or (status in READ_AGAIN and method in READS):
            return f"HTTP {status}", _retry_after(headers)
        return None
    if isinstance(outcome, (Urllib3Error, OSError)) and method in READS:
        return type(outcome).__name__, None
    return None


def say_retry(line: str) -> None:
    # tqdm.write keeps a progress bar that is being drawn intact.
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)


def _drain(response: Any) -> None:
    """Read an answer that is dropped, so that its connection goes back to the pool."""
    try:
        response.read()
    except Exception:  # noqa: BLE001 - the request is sent again anyway
        pass


def with_retries(request: Callable[..., Any], policy: RetryPolicy,
                 say: Callable[[str], None] = say_retry) -> Callable[..., Any]:
    """``request`` (the client's ``rest_client.request``) wrapped to send again what may be sent again.

    Newer clients return an error response, older ones raise ApiException: both are handled. The
    last answer is given back (or raised) as it was once the budget is spent."""

    def send(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        began, attempt = time.monotonic(), 0
        while True:
            try:
                outcome: Any = request(method, url, *args, **kwargs)
                failed = getattr(outcome, "status", 200) >= 400
            except Exception as e:  # noqa: BLE001 - judged below, re-raised unless sent again
                outcome, failed = e, True
            why = _why_again(method.upper(), outcome) if failed else None
            if why is None:
                if isinstance(outcome, BaseException):
                    raise outcome
                return outcome
            cause, retry_after = why
            wait = policy.wait(attempt, retry_after)
            if time.monotonic() - began + wait > policy.budget_s:
                say(f"⟳ API server: {cause} on {method} {urlsplit(url).path}; no more retries "
                    f"after {time.monotonic() - began:.1f} s (cluster.retry_for_s {policy.budget_s:g})")
                if isinstance(outcome, BaseException):
                    raise outcome
                return outcome
            if not isinstance(outcome, BaseException):
                _drain(outcome)
            attempt += 1
            count_retry()
            say(f"⟳ API server: {cause} on {method} {urlsplit(url).path}; sending it again in {wait:.1f} s "
                f"(retry {attempt})")
            time.sleep(wait)

    return send

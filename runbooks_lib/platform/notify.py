"""Telling people: a short message to a Slack-compatible incoming webhook.

A notifier has one method, ``send(notice)``. ``WebhookNotifier`` POSTs Slack's
``{"text": ..., "blocks": [...]}`` (Mattermost and Teams read the same ``text``); ``NoNotifier``
is the explicit "nobody is told" of ``notify="none"``. The message is short on purpose —
severity, summary, status, a link to the record — and passes through the redaction filter
before it leaves, so no registered secret or token shape is ever sent. A failed delivery is
reported, never raised: telling people must not stop the mitigation.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from ..errors import ParameterError
from ..records.redaction import redact

if TYPE_CHECKING:
    from ..config.profiles import Profile

__all__ = ["Notice", "Delivery", "Notifier", "WebhookNotifier", "NoNotifier", "notifier_for", "describe_target"]

_MAX_SUMMARY = 200  # a page is read on a phone: the record holds the rest


@dataclass(frozen=True)
class Notice:
    """One message about one incident."""

    severity: str
    summary: str
    status: str  # declared | mitigating | mitigated | resolved | ...
    service: str
    env: str
    record: str | None = None
    detail: str = ""

    def text(self) -> str:
        summary = self.summary if len(self.summary) <= _MAX_SUMMARY else self.summary[: _MAX_SUMMARY - 1] + "…"
        line = f"[{self.severity}] {self.env}/{self.service}: {summary} — status: {self.status}"
        if self.detail:
            line += f" ({self.detail})"
        if self.record:
            line += f" — record: {self.record}"
        return redact(line)


@dataclass(frozen=True)
class Delivery:
    """What became of one notice: sent or not, to where (host only), and when."""

    status: str
    target: str
    delivered: bool
    at: datetime
    text: str
    error: str | None = None


class Notifier(Protocol):
    def send(self, notice: Notice) -> Delivery: ...


def describe_target(url: str) -> str:
    """Scheme and host of a webhook URL: its path may hold a token (Slack's does)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.path.strip("/") else f"{parts.scheme}://{parts.netloc}"


@dataclass
class WebhookNotifier:
    """A Slack-compatible incoming webhook."""

    url: str
    timeout_s: float = 5.0
    sent: list[Delivery] = field(default_factory=list)

    def send(self, notice: Notice) -> Delivery:
        import requests

        text = notice.text()
        body = {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
        error = None
        try:
            reply = requests.post(self.url, json=body, timeout=self.timeout_s)
            if not reply.ok:
                error = f"HTTP {reply.status_code}"
        except requests.RequestException as e:
            error = f"unreachable ({type(e).__name__})"
        delivery = Delivery(notice.status, describe_target(self.url), error is None, datetime.now(timezone.utc), text, error)
        self.sent.append(delivery)
        return delivery


@dataclass
class NoNotifier:
    """``notify="none"``: the notices are kept in the record only."""

    sent: list[Delivery] = field(default_factory=list)

    def send(self, notice: Notice) -> Delivery:
        delivery = Delivery(notice.status, "none", False, datetime.now(timezone.utc), notice.text(), "notifications off")
        self.sent.append(delivery)
        return delivery


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def notifier_for(target: str | None, profile: "Profile") -> WebhookNotifier | NoNotifier:
    """``none`` → nobody; ``""``/None → the profile's webhook (none if it has none); else a URL."""
    from ..records.redaction import register_secret

    if target is not None and target.strip().lower() == "none":
        return NoNotifier()
    if target:
        if urlsplit(target).scheme not in ("http", "https") or not urlsplit(target).netloc:
            raise ParameterError(f"notify must be an http(s) webhook URL or 'none', got {describe_target(target)!r}")
        return WebhookNotifier(target)
    configured = profile.notify.webhook_url.get_secret_value() if profile.notify.webhook_url else ""
    if not configured:
        return NoNotifier()
    # A webhook URL carries its token in the path (Slack's, and the sandbox sink's): mask it in
    # every output. The sandbox's (loopback) one only in this process: its token ends with the sandbox.
    register_secret(configured, persist=not _is_loopback(configured))
    return WebhookNotifier(configured)


def delivery_row(delivery: Delivery) -> dict[str, Any]:
    """A delivery as a table row: status, target, delivered, time, error, message."""
    return {"status": delivery.status, "to": delivery.target, "delivered": delivery.delivered,
            "at": delivery.at.isoformat(timespec="seconds"), "error": delivery.error or "", "message": delivery.text}

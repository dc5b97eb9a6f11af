"""One look at a canary: the readings the judge needs, asked through the one set of signal queries.

Success rate and p99 over the last interval for the canary and the baseline (the primary, same
window); request and error counts since the previous look (from the raw counters, so no request
is missed); and the p99 series of both since the step began, for the canary-vs-baseline test.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...platform import signals
from .provider import MetricsProvider, Reading, Series

__all__ = ["Looker"]

SERIES_WINDOW = "5s"  # each point of a p99 series: five scrapes at the sandbox's 1 s, fifteen at 15 s... kept short


@dataclass
class Looker:
    """Asks the provider for one window's readings; remembers the counters between looks."""

    provider: MetricsProvider
    service: str
    primary_version: str
    canary_version: str
    _last: dict[str, float] = field(default_factory=dict)

    def _selectors(self) -> dict[str, str]:
        return {"canary": signals.selector(self.service, self.canary_version),
                "baseline": signals.selector(self.service, self.primary_version)}

    def _delta(self, name: str, reading: Reading) -> Reading:
        """The counter's growth since the previous look (a reset, e.g. a restarted pod, counts from 0)."""
        if reading.value is None:
            return reading
        previous = self._last.get(name)
        self._last[name] = reading.value
        if previous is None:
            grown = reading.value  # canary pods are new: their counters hold every request they served
            if name.startswith("baseline"):
                return Reading(reading.query + "  (first look: no difference yet)", 0.0)
        else:
            grown = reading.value - previous if reading.value >= previous else reading.value
        return Reading(reading.query + "  (minus the previous look)", grown)

    def online(self) -> bool:
        """Asked first at every look: an unreachable server answers "no data" at once, instead of
        every query waiting through the client's retries."""
        return self.provider.is_online()

    def readings(self, window_s: float) -> dict[str, Reading]:
        window = f"{max(2, round(window_s))}s"
        found: dict[str, Reading] = {}
        if not self.online():
            down = f"Prometheus unreachable at {getattr(getattr(self.provider, 'metrics', None), 'url', 'its URL')}"
            for side, sel in self._selectors().items():
                for name, query in ((f"{side}_success_rate", signals.success_rate(sel, window)),
                                    (f"{side}_p99_ms", signals.latency_quantile(0.99, sel, window)),
                                    (f"{side}_requests", signals.request_total(sel)),
                                    (f"{side}_errors", signals.error_total(sel))):
                    found[name] = Reading(query, None, down)
            return found
        for side, sel in self._selectors().items():
            found[f"{side}_success_rate"] = self.provider.query(signals.success_rate(sel, window))
            found[f"{side}_p99_ms"] = self.provider.query(signals.latency_quantile(0.99, sel, window))
            found[f"{side}_requests"] = self._delta(f"{side}_requests", self.provider.query(signals.request_total(sel)))
            found[f"{side}_errors"] = self._delta(f"{side}_errors", self.provider.query(signals.error_total(sel)))
        return found

    def series(self, seconds: float, online: bool = True) -> dict[str, Series]:
        if not online:
            return {f"{side}_p99_ms": Series(signals.latency_quantile(0.99, sel, SERIES_WINDOW), (), "Prometheus unreachable")
                    for side, sel in self._selectors().items()}
        return {f"{side}_p99_ms": self.provider.range(signals.latency_quantile(0.99, sel, SERIES_WINDOW), seconds, 1.0)
                for side, sel in self._selectors().items()}

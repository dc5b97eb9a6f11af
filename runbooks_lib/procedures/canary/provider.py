"""The canary's metrics provider: a small Protocol over Prometheus where "no data" is an answer.

As Flagger's providers (``RunQuery``, ``IsOnline``, ``ErrNoValuesFound``), but no data does not
count as a failed check here: a ``Reading`` carries either a value or the reason there is none
(no samples, Prometheus unreachable), and the judge holds on it. A query Prometheus rejects is
a bug in the query, not silence: that still raises.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ...errors import BackendUnavailable, NoData

if TYPE_CHECKING:
    from ...platform.metrics import Metrics

__all__ = ["Reading", "Series", "MetricsProvider", "PrometheusProvider"]


@dataclass(frozen=True)
class Reading:
    """One number asked of the metrics backend: the query as sent, its value or why there is none."""

    query: str
    value: float | None
    no_data: str = ""  # why value is None: "no samples", "Prometheus unreachable (...)"

    @property
    def ok(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class Series:
    """A time series asked of the backend (NaN and infinite points dropped)."""

    query: str
    values: tuple[float, ...]
    no_data: str = ""


@runtime_checkable
class MetricsProvider(Protocol):
    def is_online(self) -> bool: ...

    def query(self, promql: str) -> Reading: ...

    def range(self, promql: str, seconds: float, step_s: float = 1.0) -> Series: ...


class PrometheusProvider:
    """The provider over ``runbooks_lib.platform.metrics.Metrics`` (prometheus-api-client)."""

    def __init__(self, metrics: "Metrics") -> None:
        self.metrics = metrics

    def is_online(self) -> bool:
        return self.metrics.is_online()

    def query(self, promql: str) -> Reading:
        try:
            value = self.metrics.query(promql)
        except NoData:
            return Reading(promql, None, "no samples")
        except BackendUnavailable:
            return Reading(promql, None, f"Prometheus unreachable at {self.metrics.url}")
        if math.isinf(value):  # a quantile above the last finite bucket: no usable estimate
            return Reading(promql, None, "no finite estimate")
        return Reading(promql, value)

    def range(self, promql: str, seconds: float, step_s: float = 1.0) -> Series:
        try:
            frame = self.metrics.range(promql, minutes=max(seconds, 1.0) / 60, step_s=step_s)
        except NoData:
            return Series(promql, (), "no samples")
        except BackendUnavailable:
            return Series(promql, (), f"Prometheus unreachable at {self.metrics.url}")
        values = [float(v) for v in frame.iloc[:, 0].tolist()] if frame.shape[1] else []
        return Series(promql, tuple(v for v in values if math.isfinite(v)))

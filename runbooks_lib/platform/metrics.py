"""Prometheus, through prometheus-api-client: one number per question, or a time series.

As in Flagger's metric providers, a query that returns no samples raises ``NoData``, which is
its own outcome, not a failure: the caller decides whether silence halts a rollout or fails it.
The golden-signal queries and their verdict live one floor up, in ``runbooks_lib.platform.signals``.
"""
from __future__ import annotations

import math
import warnings
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailable, NoData, ParameterError, RunbookError

if TYPE_CHECKING:
    import pandas as pd

    from ..config.profiles import PrometheusSettings

__all__ = ["Metrics"]


class Metrics:
    """A Prometheus server.

    An https:// server's certificate is checked (``verify``: True, or a CA bundle's path): the
    numbers a rollout is judged on must come from the real Prometheus, not from whoever sits on
    the path. Only a profile saying ``prometheus.tls_verify: false`` turns that off.
    """

    def __init__(self, url: str, *, timeout_s: float = 10, verify: bool | str = True) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.verify = verify

    @classmethod
    def of(cls, settings: "PrometheusSettings", *, timeout_s: float = 10) -> "Metrics":
        """The Prometheus a profile names, checked as the profile says."""
        return cls(settings.url, timeout_s=timeout_s, verify=settings.verify)

    @cached_property
    def _client(self) -> Any:
        import requests
        from prometheus_api_client import PrometheusConnect
        from prometheus_api_client.prometheus_connect import MAX_REQUEST_RETRIES, RETRY_BACKOFF_FACTOR, RETRY_ON_STATUS
        from urllib3.util.retry import Retry

        session = requests.Session()
        session.verify = self.verify  # the client's own switch knows no CA bundle
        # The client's retries, except for errors no retry mends (other=0: a certificate refused
        # is refused again, and 3 backed-off tries would cost a run 12 s to say so).
        retry = Retry(total=MAX_REQUEST_RETRIES, backoff_factor=RETRY_BACKOFF_FACTOR, status_forcelist=RETRY_ON_STATUS,
                      other=0)
        # timeout: the client's own default is none, and a hung Prometheus would hang the run.
        return PrometheusConnect(url=self.url, session=session, retry=retry, timeout=self.timeout_s)

    def _call(self, what: str, fn: Any, *args: Any, at: float | None = None, **kwargs: Any) -> Any:
        import requests
        from prometheus_api_client.exceptions import PrometheusApiClientException

        params = {"timeout": f"{self.timeout_s}s", **({"time": f"{at:.3f}"} if at is not None else {})}
        try:
            return fn(*args, **kwargs, params=params)
        except PrometheusApiClientException as e:
            raise RunbookError(f"Prometheus rejected {what}: {e}") from e
        except requests.exceptions.SSLError as e:
            raise BackendUnavailable(f"Prometheus at {self.url}: its TLS certificate is not trusted ({what} not sent); "
                                     "name the CA that signs it in the profile's prometheus.ca_bundle") from e
        except requests.RequestException as e:
            raise BackendUnavailable(f"Prometheus at {self.url} unreachable during {what} ({type(e).__name__})") from e

    def is_online(self) -> bool:
        import requests

        try:
            return requests.get(f"{self.url}/-/healthy", timeout=self.timeout_s, verify=self.verify).ok
        except requests.RequestException:
            return False

    def query(self, promql: str, at: float | None = None) -> float:
        """The single value of an instant query (evaluated now, or at Unix time ``at``). NoData when
        there is no sample or it is NaN."""
        result = self._call(f"query {promql}", self._client.custom_query, promql, at=at)
        values = [float(r["value"][1]) for r in result or []]
        values = [v for v in values if not math.isnan(v)]
        if not values:
            raise NoData(f"no data for {promql}")
        if len(values) > 1:
            raise ParameterError(f"{promql} returned {len(values)} series; aggregate it to one")
        return values[0]

    def vector(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """Every series of an instant query with its labels."""
        result = self._call(f"query {promql}", self._client.custom_query, promql)
        return [(r.get("metric", {}), float(r["value"][1])) for r in result or []]

    def range(self, promql: str, minutes: float = 10, step_s: float = 5, end: datetime | None = None) -> "pd.DataFrame":
        """A range query as a DataFrame: one column per series (named by its labels), time index."""
        import pandas as pd

        end = end or datetime.now(timezone.utc)
        start = end - timedelta(minutes=minutes)
        result = self._call(
            f"range query {promql}", self._client.custom_query_range, promql,
            start_time=start, end_time=end, step=f"{max(1, round(step_s))}s",  # Prometheus wants a duration
        )
        columns = {}
        for series in result or []:
            labels = series.get("metric", {})
            name = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
            index = pd.to_datetime([float(t) for t, _ in series["values"]], unit="s", utc=True)
            columns[name] = pd.Series([float(v) for _, v in series["values"]], index=index)
        if not columns:
            raise NoData(f"no data for {promql} over the last {minutes} min")
        return pd.DataFrame(columns).sort_index()

    def wait_for_targets(self, selector: str, count: int, timeout_s: float = 30, what: str | None = None) -> int:
        """Wait until ``count`` scrape targets matching ``selector`` are up (new pods take a few
        seconds to be discovered and scraped); returns how many are up."""
        import time

        from ..display import progress_bar

        deadline = time.monotonic() + timeout_s
        with progress_bar(total=count, desc=f"scraped targets: {what or '{' + selector + '}'}", unit="target") as bar:
            while True:
                try:
                    up = int(self.query(f"count(up{{{selector}}} == 1)"))
                except NoData:
                    up = 0
                bar.n = min(up, count)
                bar.refresh()
                if up >= count:
                    return up
                if time.monotonic() > deadline:
                    raise NoData(f"only {up} of {count} targets {{{selector}}} scraped after {timeout_s:.0f} s")
                time.sleep(0.5)

    def scraped_after(self, selector: str, count: int, after: float, timeout_s: float = 30,
                      what: str | None = None) -> float:
        """Wait until ``count`` targets matching ``selector`` are up and each was last scraped at or
        after ``after`` (Unix seconds): their counters then hold everything served until then.
        Returns the oldest of those last scrapes (Prometheus' clock)."""
        import time

        from ..display import progress_bar

        deadline = time.monotonic() + timeout_s
        with progress_bar(total=count, desc=f"scraped after the window: {what or '{' + selector + '}'}",
                          unit="target") as bar:
            while True:
                try:
                    up = int(self.query(f"count(up{{{selector}}} == 1)"))
                    oldest = self.query(f"min(timestamp(up{{{selector}}}))")
                except NoData:
                    up, oldest = 0, 0.0
                bar.n = min(up, count) if oldest >= after else 0
                bar.refresh()
                if up >= count and oldest >= after:
                    return oldest
                if time.monotonic() > deadline:
                    raise NoData(f"{what or '{' + selector + '}'}: {up} of {count} targets up, the oldest last scraped "
                                 f"{after - oldest:.1f} s before the end of the window after {timeout_s:.0f} s")
                time.sleep(0.1)  # scrapes come every few seconds at most: a tenth of one is not worth waiting

    def alert_rules(self) -> list[str]:
        """Names of the alerting rules Prometheus has loaded."""
        import requests

        try:
            reply = requests.get(f"{self.url}/api/v1/rules", params={"type": "alert"}, timeout=self.timeout_s,
                                 verify=self.verify)
            reply.raise_for_status()
            return [r["name"] for g in reply.json()["data"]["groups"] for r in g["rules"]]
        except requests.RequestException as e:
            raise BackendUnavailable(f"Prometheus at {self.url}: cannot list rules ({type(e).__name__})") from e
        except (ValueError, LookupError, TypeError) as e:  # not the rules API's JSON
            raise BackendUnavailable(f"Prometheus at {self.url}: unreadable rules answer ({type(e).__name__})") from e


# prometheus-api-client's dataframe helpers warn under pandas 3 (DESIGN.md); we do not use them,
# but importing the package may still emit it.
warnings.filterwarnings("ignore", module="prometheus_api_client")

"""A real Prometheus (Debian 2.42) for the sandbox, scraping pods found through http_sd.

Debian's 2.42 rejects ``kubernetes_sd_configs``, so the sandbox serves the pod list as
``http_sd_configs`` JSON whose labels are the ``__meta_kubernetes_pod_*`` names that
kubernetes_sd would give; the deployment guide's relabelling (pod label app → job, pod IP →
``__address__`` with the metrics port) then works as written. Recording and alert rules
cover the golden signals over ``http_requests_total{code,method,route}`` and the
``http_request_duration_seconds`` histogram, per job and per job and version.

Prometheus is ready at once but its discovery manager batches updates (~5 s), so the
first sample arrives seconds later: wait for ``up == 1`` (:meth:`wait_for_targets_up`),
not ``/-/ready``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .ports import (
    LOOPBACK,
    PidFile,
    ServerError,
    ServerStartFailed,
    StaleState,
    claim_port,
    log_tail,
    require_executable,
    wait_port_closed,
)

__all__ = ["PrometheusServer", "prometheus_config", "golden_signal_rules", "SCRAPE_JOB"]

SCRAPE_JOB = "veza-pods"  # replaced on every target by the pod's app label


def _pod_relabelling(metrics_port: int) -> list[dict[str, Any]]:
    """The guide's relabelling, generalised from one app to every app-labelled pod."""
    return [
        {"source_labels": ["__meta_kubernetes_pod_label_app"], "action": "keep", "regex": ".+"},
        {"source_labels": ["__meta_kubernetes_pod_label_app"], "target_label": "job"},
        {"source_labels": ["__meta_kubernetes_pod_ip"], "regex": "(.+)",
         "target_label": "__address__", "replacement": f"$1:{metrics_port}"},
        # A pod may name another metrics port with the usual annotation.
        {"source_labels": ["__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
         "regex": r"(.+);(\d+)", "target_label": "__address__", "replacement": "$1:$2"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_label_version"], "target_label": "version"},
        # What runs is the image: its tag overrides a `version` label that `kubectl set image` left stale.
        {"source_labels": ["__meta_kubernetes_pod_container_image"], "regex": ".*:([^:/@]+)",
         "target_label": "version"},
    ]


def prometheus_config(
    sd_url: str,
    rule_files: list[str],
    *,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    metrics_port: int = 8080,
    static_jobs: dict[str, str] | None = None,
    static_jobs_token_file: str | None = None,
) -> dict[str, Any]:
    """prometheus.yml as a dict: one http_sd job over the sandbox's pods, plus the rules.

    ``static_jobs`` adds a job per exporter URL (``{"redis": "http://127.0.0.1:PORT/redis/metrics"}``),
    scraped with the bearer token in ``static_jobs_token_file`` (the sandbox's control endpoint
    serves the Redis exporter and answers only its token holders).
    """
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,  # may not exceed the interval
            "evaluation_interval": evaluation_interval,
            "external_labels": {"cluster": "veza-sandbox"},
        },
        "rule_files": rule_files,
        "scrape_configs": [
            {
                "job_name": SCRAPE_JOB,
                # Pods come and go during rollouts: refresh as often as we scrape.
                "http_sd_configs": [{"url": sd_url, "refresh_interval": scrape_interval}],
                "relabel_configs": _pod_relabelling(metrics_port),
            }
        ],
    }
    for job, url in (static_jobs or {}).items():
        host_port, _, path = url.removeprefix("http://").partition("/")
        scrape: dict[str, Any] = {"job_name": job, "metrics_path": f"/{path}", "static_configs": [{"targets": [host_port]}]}
        if static_jobs_token_file:
            scrape["authorization"] = {"type": "Bearer", "credentials_file": static_jobs_token_file}
        config["scrape_configs"].append(scrape)
    return config


def golden_signal_rules(window: str = "1m", alert_for: str = "30s") -> dict[str, Any]:
    """Recording rules (rate, 5xx ratio, p99) per job and per job+version, and two alerts."""
    records: list[dict[str, str]] = []
    for level, by in (("job", "job"), ("job_version", "job, version")):
        requests = f"sum by ({by}) (rate(http_requests_total[{window}]))"
        records += [
            {"record": f"{level}:http_requests:rate{window}",
             "expr": requests},
            # A version that never failed has no 5xx series: `or ... * 0` makes its ratio 0
            # instead of absent, so a healthy canary is judged healthy, not "no data".
            {"record": f"{level}:http_requests_errors:ratio_rate{window}",
             "expr": f'(sum by ({by}) (rate(http_requests_total{{code=~"5.."}}[{window}]))'
                     f" or {requests} * 0) / {requests}"},
            {"record": f"{level}:http_request_duration_seconds:p99_{window}",
             "expr": f"histogram_quantile(0.99, sum by ({by}, le) "
                     f"(rate(http_request_duration_seconds_bucket[{window}])))"},
        ]
    alerts = [
        {"alert": "HighErrorRate", "expr": f"job:http_requests_errors:ratio_rate{window} > 0.01",
         "for": alert_for, "labels": {"severity": "critical"},
         "annotations": {"summary": "{{ $labels.job }}: more than 1 % of requests fail (5xx)",
                         "value": "{{ $value | humanizePercentage }}"}},
        {"alert": "HighLatencyP99", "expr": f"job:http_request_duration_seconds:p99_{window} > 0.5",
         "for": alert_for, "labels": {"severity": "warning"},
         "annotations": {"summary": "{{ $labels.job }}: p99 latency above 500 ms",
                         "value": "{{ $value | humanizeDuration }}"}},
    ]
    return {"groups": [{"name": "veza-golden-signals", "rules": records},
                       {"name": "veza-alerts", "rules": alerts}]}


@dataclass
class PrometheusServer:
    """One Prometheus on a loopback port; config, rules and TSDB under ``state_dir/prometheus``.

    ``sd_url`` is the http_sd endpoint listing the pods. Each start begins with an empty
    TSDB. ``stop()`` from a fresh instance on the same state directory stops a server an
    earlier process started.
    """

    state_dir: Path
    sd_url: str = ""
    static_jobs: dict[str, str] | None = None  # job -> exporter URL (the sandbox's Redis exporter)
    static_jobs_token_file: str | None = None  # the bearer token the exporters want (0600 file)
    port: int | None = None
    host: str = LOOPBACK
    scrape_interval: str = "1s"
    evaluation_interval: str = "1s"
    metrics_port: int = 8080  # the pods' metrics port (the guide: $1:8080)
    rate_window: str = "1m"
    alert_for: str = "30s"
    retention: str = "1d"
    binary: str = "prometheus"
    start_timeout: float = 20.0
    # Inside the cluster's network namespace (the real-Kubernetes sandbox: pod IPs live there):
    # the command prefix that runs it inside, and the address it listens on there; ``host:port``
    # is then the host's way in (a forwarder rule on the same port, put in place by the caller).
    exec_prefix: tuple[str, ...] = ()
    listen_host: str | None = None

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.home = self.state_dir / "prometheus"
        self._pidfile = PidFile(self.home / "prometheus.pid", "prometheus")
        self._process: subprocess.Popen[bytes] | None = None
        if self.port is None and self._pidfile.running_pid():
            try:
                self.port = int(json.loads((self.home / "server.json").read_text())["port"])
            except (OSError, ValueError, KeyError):
                pass

    @property
    def url(self) -> str:
        """The HTTP API base URL (PROMETHEUS_URL)."""
        if self.port is None:
            raise ServerError("prometheus: not started, no URL yet")
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.home / "prometheus.yml"

    @property
    def rules_path(self) -> Path:
        return self.home / "golden-signals.rules.yml"

    @property
    def log_path(self) -> Path:
        return self.home / "prometheus.log"

    def write_config(self) -> Path:
        """Write prometheus.yml and the rules file; returns the config path."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.rules_path.write_text(yaml.safe_dump(golden_signal_rules(self.rate_window, self.alert_for),
                                                  sort_keys=False))
        config = prometheus_config(self.sd_url, [str(self.rules_path)], scrape_interval=self.scrape_interval,
                                   evaluation_interval=self.evaluation_interval, metrics_port=self.metrics_port,
                                   static_jobs=self.static_jobs, static_jobs_token_file=self.static_jobs_token_file)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return self.config_path

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, keep_data: bool = False) -> "PrometheusServer":
        """Write the config, start Prometheus, wait until it serves and has loaded the rules.

        ``keep_data``: reuse the TSDB of a stopped server (a restart after an outage drill)."""
        if not self.sd_url:
            raise ServerError("prometheus: sd_url (the http_sd endpoint listing the pods) is required")
        binary = require_executable(self.binary, "prometheus")
        self._refuse_stale(keep_data)
        if self.listen_host is None:
            self.port = claim_port(self.port, "prometheus", self.host)
        elif self.port is None:
            raise ServerError("prometheus: listening inside a namespace needs its port given")
        self.write_config()
        tsdb = self.home / "data"
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                [*self.exec_prefix, binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={tsdb}",
                 f"--storage.tsdb.retention.time={self.retention}",
                 f"--web.listen-address={self.listen_host or self.host}:{self.port}", "--web.enable-lifecycle"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.home, start_new_session=True,
            )
        self._pidfile.write(self._process.pid)
        (self.home / "server.json").write_text(json.dumps({"pid": self._process.pid, "port": self.port}))
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _refuse_stale(self, keep_data: bool = False) -> None:
        pid = self._pidfile.running_pid()
        if pid is not None:
            raise StaleState(
                f"prometheus: a server from an earlier run (pid {pid}) still runs on {self.home}; "
                f"stop it first (`runbook sandbox down`, or PrometheusServer(state_dir).stop())"
            )
        # Nothing runs: an earlier run's TSDB (maybe locked by a crash) is discarded.
        self._pidfile.remove()
        if not keep_data:
            shutil.rmtree(self.home / "data", ignore_errors=True)

    def _wait_ready(self) -> None:
        import requests

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ServerStartFailed(
                    f"prometheus exited with code {self._process.returncode} at start: "
                    f"{log_tail(self.log_path, 2)}; see {self.log_path}"
                )
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200 and self.rule_groups():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise ServerStartFailed(f"prometheus not ready after {self.start_timeout:.0f} s; see {self.log_path}")

    def stop(self, grace: float = 5.0) -> None:
        """Stop the server we started (by its recorded PID) and wait until its port is free."""
        self._pidfile.stop(grace)
        if self._process is not None:
            try:
                self._process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self.port is not None and self.listen_host is None:  # inside: the forwarder holds host:port
            wait_port_closed(self.port, self.host)
        (self.home / "server.json").unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        """What runs where: ``running``, ``pid``, ``url``, and targets up when reachable."""
        pid = self._pidfile.running_pid()
        info: dict[str, Any] = {"server": "prometheus", "running": pid is not None, "pid": pid,
                                "url": f"http://{self.host}:{self.port}" if self.port else None}
        if pid is not None and self.port is not None:
            try:
                info["targets_up"] = len(self.up_targets())
            except ServerError:
                info["targets_up"] = None
        return info

    def reload(self) -> None:
        """Re-read the config files (after :meth:`write_config`) through the lifecycle API."""
        import requests

        try:
            requests.post(f"{self.url}/-/reload", timeout=5).raise_for_status()
        except requests.RequestException as e:
            raise ServerError(f"prometheus: reload failed: {e}") from e

    # -- queries -------------------------------------------------------------------------
    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path> and return its ``data``."""
        import requests

        try:
            reply = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
            body = reply.json()
        except (requests.RequestException, ValueError) as e:
            raise ServerError(f"prometheus: /api/v1/{path} failed: {e}") from e
        if body.get("status") != "success":
            raise ServerError(f"prometheus: /api/v1/{path}: {body.get('error', reply.status_code)}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (``[{"metric": {...}, "value": [t, "v"]}, ...]``)."""
        return list(self.api("query", query=promql)["result"])

    def rule_groups(self) -> list[str]:
        """Names of the rule groups Prometheus has loaded."""
        return [group["name"] for group in self.api("rules")["groups"]]

    def up_targets(self, job: str | None = None) -> list[dict[str, str]]:
        """Label sets of the targets whose last scrape succeeded (``up == 1``)."""
        selector = f'up{{job="{job}"}}' if job else "up"
        return [series["metric"] for series in self.query(f"{selector} == 1")]

    def wait_for_targets_up(self, min_targets: int = 1, timeout: float = 30.0,
                            job: str | None = None) -> list[dict[str, str]]:
        """Wait until at least ``min_targets`` targets (of ``job``) report ``up == 1``.

        Returns their label sets; on timeout raises :class:`ServerStartFailed` naming the
        targets Prometheus knows and their last scrape error.
        """
        deadline = time.monotonic() + timeout
        while True:
            up = self.up_targets(job)
            if len(up) >= min_targets:
                return up
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        known = [
            f"{t['labels'].get('job')}/{t['labels'].get('pod', t['scrapeUrl'])}: {t['health']}"
            + (f" ({t['lastError']})" if t.get("lastError") else "")
            for t in self.api("targets", state="active")["activeTargets"]
        ]
        raise ServerStartFailed(
            f"prometheus: {len(up)} of {min_targets} targets up after {timeout:.0f} s; "
            f"known targets: {', '.join(known) or 'none (is the http_sd endpoint serving pods?)'}"
        )

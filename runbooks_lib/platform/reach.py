"""How a check's HTTP requests reach pods and Services: through the API server, or directly.

A person's laptop, a CI runner or JupyterLab cannot reach pod IPs or a Service's cluster IP; only
a process inside the cluster network can. What every machine with a kubeconfig can reach is the
API server, and the API server proxies to pods and Services (``.../pods/<name>:<port>/proxy/...``,
what ``kubectl get --raw`` and ``kubectl proxy`` use). So by default (``cluster.reach:
apiserver``) the checks go that way, with the profile's credentials; ``reach: direct`` sends them
to pod and cluster IPs, for a runbook that runs inside the cluster (a Job).

Through the API server an answer can be the API server's own: it refused the request (429, or
503 while overloaded), which says nothing about the pod, so the request is sent again for up to
``cluster.retry_for_s`` and counted with the other API server retries; or it could not reach the
pod (503 "error trying to reach service"), which is the pod's failure and is reported as one.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import quote

from .api_retry import REFUSED, RetryPolicy, count_retry, say_retry

if TYPE_CHECKING:
    import requests
    from kubernetes.client import ApiClient

    from ..config.profiles import ClusterSettings

__all__ = ["Reach", "reach_of"]

# The API server's answer when it could not reach the pod: the pod's failure, never sent again.
_UNREACHABLE = ("error trying to reach service", "no endpoints available", "dial tcp")


@dataclass
class Reach:
    """Builds check URLs and sends GETs, directly or through the API server (module doc).

    ``api_url`` None: direct. Otherwise every URL is under the API server, and ``auth`` holds what
    a requests Session needs (headers, verify, cert) to be the profile's user there.
    """

    namespace: str
    api_url: str | None = None
    auth: dict[str, Any] | None = None
    retry_for_s: float = 20.0

    def __post_init__(self) -> None:
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    @property
    def through_api_server(self) -> bool:
        return self.api_url is not None

    def describe(self) -> str:
        return "through the API server's proxy" if self.through_api_server else "directly (pod and cluster IPs)"

    # -- where --------------------------------------------------------------------------------
    def pod_url(self, pod: str, ip: str | None, port: int) -> str | None:
        """The base URL of a pod's port (None: a direct check of a pod without an IP)."""
        if self.api_url is None:
            return f"http://{ip}:{port}" if ip else None
        return f"{self.api_url}/api/v1/namespaces/{quote(self.namespace)}/pods/{quote(pod)}:{port}/proxy"

    def service_url(self, service: str, cluster_ip: str, port: int) -> str:
        if self.api_url is None:
            return f"http://{cluster_ip}:{port}"
        return f"{self.api_url}/api/v1/namespaces/{quote(self.namespace)}/services/{quote(service)}:{port}/proxy"

    # -- sending ------------------------------------------------------------------------------
    def session(self) -> "requests.Session":
        """This thread's session (connections are kept alive per thread)."""
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            if self.auth:
                session.headers.update(self.auth.get("headers") or {})
                session.verify = self.auth.get("verify", True)
                if self.auth.get("cert"):
                    session.cert = self.auth["cert"]
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def get(self, url: str, timeout_s: float) -> tuple[int | None, float, Any]:
        """(status or None for no answer, milliseconds of the last attempt, the reply)."""
        import requests

        began_all, attempt = time.monotonic(), 0
        policy = RetryPolicy(budget_s=self.retry_for_s)
        while True:
            began = time.monotonic()
            try:
                session = self.session()
                # verify given again per request: requests lets REQUESTS_CA_BUNDLE (set on many
                # machines) override a Session's own verify, and the cluster CA would be ignored.
                reply = session.get(url, timeout=timeout_s, verify=session.verify)
            except requests.RequestException:
                return None, 1000 * (time.monotonic() - began), None
            ms = 1000 * (time.monotonic() - began)
            if not (self.through_api_server and _refused_by_api_server(reply)):
                return reply.status_code, ms, reply
            wait = policy.wait(attempt, None)
            if time.monotonic() - began_all + wait > policy.budget_s:
                return reply.status_code, ms, reply
            attempt += 1
            count_retry()
            say_retry(f"⟳ API server: HTTP {reply.status_code} on a check through its proxy; sending it again in "
                 f"{wait:.1f} s (retry {attempt})")
            time.sleep(wait)

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def __enter__(self) -> "Reach":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _refused_by_api_server(reply: Any) -> bool:
    """The API server's own refusal (a Status it answered 429/503 without asking the pod)."""
    if reply.status_code not in REFUSED or "json" not in reply.headers.get("Content-Type", ""):
        return False
    try:
        body = json.loads(reply.content)
    except ValueError:
        return False
    if not isinstance(body, dict) or body.get("kind") != "Status":
        return False
    message = str(body.get("message") or "")
    return not any(part in message for part in _UNREACHABLE)


def _auth_of(client: Any) -> dict[str, Any]:
    """What a requests Session needs to act as the kubernetes client's user."""
    config = client.configuration
    headers = {}
    token = config.get_api_key_with_prefix("authorization") if config.api_key else None
    if token:  # a bearer token (a client certificate goes in cert)
        headers["Authorization"] = token
    verify: Any = (config.ssl_ca_cert or True) if config.verify_ssl else False
    cert = (config.cert_file, config.key_file) if config.cert_file and config.key_file else None
    return {"headers": headers, "verify": verify, "cert": cert}


def reach_of(settings: "ClusterSettings", client: "Callable[[], ApiClient]") -> Reach:
    """The Reach a profile's cluster settings ask for (``cluster.reach``); ``client`` gives the
    kubernetes client whose server and credentials the API server's proxy is reached with."""
    if settings.reach == "direct":
        return Reach(settings.namespace, retry_for_s=settings.retry_for_s)
    api = client()
    return Reach(settings.namespace, api_url=api.configuration.host.rstrip("/"), auth=_auth_of(api),
                 retry_for_s=settings.retry_for_s)

"""Connecting to the cluster a profile names, and translating the client's errors.

The official ``kubernetes`` client is imported lazily: ``import runbooks_lib`` stays cheap.
Every ``ApiException`` or connection error is turned into the library's own hierarchy by
``translate`` so no client-library exception reaches a runbook.
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import BackendUnavailable, Conflict, GuardRefused, MaybeApplied, NotFound, ParameterError, RunbookError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from ..config.profiles import ClusterSettings

__all__ = ["api_client", "call", "resource_path", "translate", "server_url", "REQUEST_TIMEOUT_S"]

# (connect, read) seconds for every API call: the official client waits forever by default, so a
# hung API server would hang a runbook with no error and no progress.
REQUEST_TIMEOUT_S = (5.0, 30.0)
# Answers a write may get after it landed (etcd committed, the reply was lost or failed).
_MAYBE_APPLIED = frozenset({500, 502, 504})


def api_client(cluster: "ClusterSettings") -> "ApiClient":
    """A client for the profile's kubeconfig and context (not the process-wide default)."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    path = os.path.expanduser(cluster.kubeconfig) if cluster.kubeconfig else None
    if path and not os.path.isfile(path):
        raise BackendUnavailable(f"kubeconfig {path} does not exist")
    try:
        client = config.new_client_from_config(config_file=path, context=cluster.context or None)
    except ConfigException as e:
        raise BackendUnavailable(f"cannot load kubeconfig {path or '(default)'}: {e}") from e
    from .api_retry import RetryPolicy, with_retries

    request = client.rest_client.request

    def with_deadline(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return request(*args, _request_timeout=_request_timeout or REQUEST_TIMEOUT_S, **kwargs)

    # A request the API server refused (429/503), or a read it failed, is sent again (api_retry).
    client.rest_client.request = with_retries(with_deadline, RetryPolicy(budget_s=cluster.retry_for_s))
    return client


def call(client: "ApiClient", method: str, path: str, *, query: dict[str, Any] | None = None,
         body: Any = None, text: bool = False, timeout: float | None = None) -> Any:
    """One API call by path, as ``kubectl get --raw`` makes it: JSON in, plain dicts out.

    The typed APIs (``AppsV1Api``, ``CoreV1Api``...) are not used: their modules build some 250
    pydantic models when imported, about a second on a busy two-core machine, all before a
    rollback can send its one patch, and the runbooks read and write dicts anyway. The request
    still goes through the client's own serializer, authentication, TLS and REST layer (with this
    module's deadline and retries), and errors are the client's ``ApiException``, for ``translate``.
    A PATCH body that is a list is a JSON patch, a dict a strategic-merge patch, as with the typed
    APIs. ``path`` is already quoted (``resource_path``); ``text`` reads a plain-text answer (a log);
    ``timeout`` (seconds) shortens the read deadline of ``REQUEST_TIMEOUT_S``.
    """
    headers = {"Accept": "text/plain, application/json" if text else "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json-patch+json" if method == "PATCH" else "application/json"
    query_params = [(k, v) for k, v in (query or {}).items() if v is not None]
    method, url, headers, body, _ = client.param_serialize(method, path, query_params=query_params,
                                                           header_params=headers, body=body,
                                                           auth_settings=["BearerToken"])
    deadline = (REQUEST_TIMEOUT_S[0], timeout) if timeout else None
    response = client.call_api(method, url, header_params=headers, body=body, _request_timeout=deadline)
    response.read()
    answer = client.response_deserialize(response, {"2XX": "str" if text else "object"}).data
    if not text and not isinstance(answer, dict):  # e.g. a proxy's HTML page answered 200
        raise ValueError(f"expected a JSON object, got {type(answer).__name__}")
    return answer


def resource_path(prefix: str, *segments: str) -> str:
    """An API path: ``prefix`` (``/apis/apps/v1``) then each segment quoted, so that a name can
    never smuggle a ``/`` or a ``?`` into the path."""
    from urllib.parse import quote

    return "/".join([prefix.rstrip("/"), *(quote(segment, safe="") for segment in segments)])


def server_url(client: "ApiClient") -> str:
    return str(client.configuration.host)


def _status_message(body: Any) -> str:
    try:
        return json.loads(body).get("message", "") or ""
    except (TypeError, ValueError, AttributeError):
        return ""


@contextlib.contextmanager
def translate(what: str, *, write: bool = False) -> Iterator[None]:
    """Run a block of client calls; re-raise client errors as RunbookError children.

    ``what`` says what was being done, e.g. "read deployment veza-backend-api". For a ``write``, an
    error that may come after the change landed (500, 502, 504, no answer) is MaybeApplied.
    """
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    try:
        yield
    except RunbookError:
        raise
    except ApiException as e:
        detail = _status_message(e.body) or e.reason or "error"
        message = f"{what}: {detail} (HTTP {e.status})"
        if e.status == 404:
            raise NotFound(message) from e
        if e.status == 409:
            raise Conflict(message) from e
        if e.status in (400, 422):
            raise ParameterError(message) from e
        if e.status in (401, 403):
            raise GuardRefused(message) from e
        if write and e.status in _MAYBE_APPLIED:
            raise MaybeApplied(message) from e
        raise BackendUnavailable(message) from e
    except (Urllib3Error, OSError) as e:
        if write and not _never_sent(e):
            raise MaybeApplied(f"{what}: no answer from the API server ({type(e).__name__})") from e
        raise BackendUnavailable(f"{what}: cannot reach the API server ({type(e).__name__})") from e
    except ValueError as e:  # a body that is not the JSON object asked for (e.g. a proxy's error page)
        raise BackendUnavailable(f"{what}: the API server's answer could not be read ({type(e).__name__})") from e


def _never_sent(error: BaseException) -> bool:
    """True when the connection was never made (refused, connect timeout): the write did not leave."""
    from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

    reason = error.reason if isinstance(error, MaxRetryError) else error
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError, ConnectionRefusedError))

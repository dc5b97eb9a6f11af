"""Finding 8c: the Prometheus a rollout is judged on is checked by its certificate.

Until now the client ran with ``disable_ssl=True``: anyone on the path to an https://
Prometheus could answer the canary's and the health check's queries. Verification is now on
unless the profile says ``prometheus.tls_verify: false``; an internal CA is named with
``prometheus.ca_bundle``; the sandbox's http:// URL is unaffected.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from pydantic import ValidationError

from runbooks_lib.config.profiles import PrometheusSettings
from runbooks_lib.errors import BackendUnavailable
from runbooks_lib.platform.metrics import Metrics

from .tls_helpers import self_signed, serve


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_url(certificate: tuple[Path, Path]) -> Iterator[str]:
    yield from serve(certificate)


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    yield from serve(None)


def test_an_untrusted_certificate_is_refused_by_default(https_url: str) -> None:
    with pytest.raises(BackendUnavailable, match="certificate is not trusted.*prometheus.ca_bundle"):
        Metrics(https_url, timeout_s=3).query("up")
    with pytest.raises(BackendUnavailable, match="certificate is not trusted"):
        Metrics.of(PrometheusSettings(url=https_url), timeout_s=3).query("up")
    assert not Metrics(https_url, timeout_s=3).is_online()


def test_the_profiles_ca_bundle_makes_it_trusted(https_url: str, certificate: tuple[Path, Path]) -> None:
    settings = PrometheusSettings(url=https_url, ca_bundle=str(certificate[0]))
    assert Metrics.of(settings, timeout_s=3).query("up") == 1.0
    assert Metrics.of(settings, timeout_s=3).is_online()


def test_only_the_profile_turns_verification_off(https_url: str) -> None:
    assert Metrics.of(PrometheusSettings(url=https_url, tls_verify=False), timeout_s=3).query("up") == 1.0


def test_plain_http_is_unaffected(http_url: str) -> None:
    assert Metrics.of(PrometheusSettings(url=http_url), timeout_s=3).query("up") == 1.0


def test_contradictory_or_missing_tls_settings_are_refused(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    with pytest.raises(ValidationError, match="no such file"):
        PrometheusSettings(url="https://prometheus.example", ca_bundle=str(tmp_path / "absent.pem"))
    with pytest.raises(ValidationError, match="means nothing with tls_verify: false"):
        PrometheusSettings(url="https://prometheus.example", ca_bundle=str(certificate[0]), tls_verify=False)

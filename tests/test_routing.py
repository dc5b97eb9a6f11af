"""The routers' pure parts: weights, the replica ratio's nearest split, refusals before any change.

The routers' cluster calls are exercised end to end by tests/runbooks/test_canary.py (Istio,
against the sandbox's proxy, which honours VirtualService weights).
"""
from __future__ import annotations

import pydantic
import pytest

from runbooks_lib.errors import ParameterError
from runbooks_lib.config.profiles import Routing
from runbooks_lib.platform.routing import IstioRouter, ReplicaRouter, SelectorRouter, Target, check_weights, make_router, replica_split

TARGET = Target("veza-backend-api", "veza-backend-api", "veza-backend-api-canary", {"version": "v1.5.0"}, {"version": "v1.6.0"})


@pytest.mark.parametrize("weight, total, split", [
    (0, 3, (3, 0)), (100, 3, (0, 3)),
    (5, 3, (2, 1)),  # 5 % of 3 pods is 0.15: the nearest split that still tests the canary is 1 in 3
    (50, 4, (2, 2)), (25, 4, (3, 1)), (5, 20, (19, 1)), (99, 3, (1, 2)),
])
def test_replica_split_is_the_nearest_with_a_pod_on_each_side(weight: float, total: int, split: tuple[int, int]) -> None:
    assert replica_split(weight, total) == split


def test_the_replica_router_says_when_a_split_is_not_exact() -> None:
    router = ReplicaRouter(None, TARGET, total=3)  # type: ignore[arg-type]  # achievable() reads nothing
    routes = router.achievable(95, 5)
    assert (routes.primary_weight, routes.canary_weight, routes.exact) == (66.7, 33.3, False)
    assert "nearest achievable" in str(routes)
    assert ReplicaRouter(None, TARGET, total=20).achievable(95, 5).exact  # type: ignore[arg-type]


@pytest.mark.parametrize("primary, canary", [(90, 5), (101, -1), (50, 60)])
def test_weights_must_be_percentages_adding_up_to_100(primary: float, canary: float) -> None:
    with pytest.raises(ParameterError, match="adding up to 100"):
        check_weights(primary, canary)


def test_istio_gives_exact_percentages() -> None:
    routes = IstioRouter(None, TARGET).achievable(95, 5)  # type: ignore[arg-type]
    assert (routes.primary_weight, routes.canary_weight, routes.exact) == (95, 5, True)


def test_the_selector_router_refuses_a_partial_split_before_any_change() -> None:
    router = SelectorRouter(None, TARGET)  # type: ignore[arg-type]  # None: any cluster call would fail
    with pytest.raises(ParameterError, match="switches all traffic at once"):
        router.achievable(95, 5)
    assert router.achievable(0, 100).canary_weight == 100


def test_an_unknown_router_is_an_error_never_a_fallback() -> None:
    with pytest.raises(ParameterError, match="unknown router 'nginx'; known routers: istio, replicas, selector"):
        make_router(None, None, TARGET, name="nginx")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        Routing(router="nginx")  # type: ignore[arg-type]
    assert Routing().router == "istio"

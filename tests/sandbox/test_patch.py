"""Patch semantics: strategic merge (directives, merge keys), JSON merge and JSON patch."""
from __future__ import annotations

import pytest

from runbooks_sandbox.models import errors
from runbooks_sandbox.models.patch import apply_patch, json_patch, merge_patch, strategic_merge

POD_SPEC = {
    "containers": [
        {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
         "ports": [{"containerPort": 8080, "name": "http"}]},
        {"name": "sidecar", "image": "proxy:1"},
    ],
    "tolerations": [{"key": "a"}],
}


def test_containers_merge_by_name_and_env_by_name() -> None:
    patched = strategic_merge(POD_SPEC, {"containers": [{"name": "app", "image": "app:2",
                                                          "env": [{"name": "B", "value": "3"}]}]})
    app, sidecar = patched["containers"]
    assert app["image"] == "app:2" and sidecar["image"] == "proxy:1"
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]
    assert POD_SPEC["containers"][0]["image"] == "app:1", "the original is not modified"


def test_lists_without_merge_key_are_replaced_and_null_deletes() -> None:
    patched = strategic_merge(POD_SPEC, {"tolerations": [{"key": "b"}], "containers": [{"name": "app", "ports": None}]})
    assert patched["tolerations"] == [{"key": "b"}]
    assert "ports" not in patched["containers"][0]


def test_delete_directive_and_element_order() -> None:
    patched = strategic_merge(POD_SPEC, {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
        "containers": [{"name": "app", "env": [{"name": "A", "$patch": "delete"}]}],
    })
    assert [c["name"] for c in patched["containers"]] == ["sidecar", "app"]
    assert patched["containers"][1]["env"] == [{"name": "B", "value": "2"}]


def test_retain_keys_and_replace_directive() -> None:
    strategy = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}
    patched = strategic_merge(strategy, {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}})
    assert patched == {"strategy": {"type": "Recreate"}}
    replaced = strategic_merge({"spec": {"a": 1, "b": 2}}, {"spec": {"$patch": "replace", "c": 3}})
    assert replaced == {"spec": {"c": 3}}


def test_ports_merge_on_their_own_keys() -> None:
    service = {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}
    patched = strategic_merge(service, {"ports": [{"port": 80, "targetPort": 9090}]})
    assert patched["ports"] == [{"port": 80, "targetPort": 9090}, {"port": 443, "targetPort": 8443}]
    spec = strategic_merge(POD_SPEC, {"containers": [{"name": "app", "ports": [{"containerPort": 9090}]}]})
    assert [p["containerPort"] for p in spec["containers"][0]["ports"]] == [8080, 9090]


def test_finalizers_merge_as_a_set_and_selector_maps_merge() -> None:
    meta = {"finalizers": ["a"], "labels": {"app": "web", "version": "blue"}}
    patched = strategic_merge(meta, {"finalizers": ["b", "a"], "labels": {"version": "green"}})
    assert patched == {"finalizers": ["a", "b"], "labels": {"app": "web", "version": "green"}}


def test_json_merge_patch_replaces_lists() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1, 2]}, {"a": {"b": None}, "l": [3]}) == {"a": {"c": 2}, "l": [3]}


def test_json_patch_operations() -> None:
    doc = {"spec": {"template": {"spec": {"containers": [{"image": "a"}]}}}, "metadata": {"annotations": {"x/y": "1"}}}
    patched = json_patch(doc, [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "b"},
        {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"image": "c"}},
        {"op": "remove", "path": "/metadata/annotations/x~1y"},
        {"op": "test", "path": "/spec/template/spec/containers/1/image", "value": "c"},
        {"op": "copy", "from": "/spec/template/spec/containers/0", "path": "/spec/first"},
    ])
    assert [c["image"] for c in patched["spec"]["template"]["spec"]["containers"]] == ["b", "c"]
    assert patched["metadata"]["annotations"] == {} and patched["spec"]["first"] == {"image": "b"}
    with pytest.raises(errors.Invalid):
        json_patch(doc, [{"op": "test", "path": "/spec/template", "value": 1}])
    with pytest.raises(errors.Invalid):
        json_patch(doc, [{"op": "remove", "path": "/nope"}])


def test_patch_type_by_content_type() -> None:
    obj = {"l": [{"name": "a", "v": 1}], "m": {"k": 1}}
    assert apply_patch(obj, [{"op": "add", "path": "/m/j", "value": 2}], "application/json-patch+json")["m"] == {"k": 1, "j": 2}
    assert apply_patch(obj, {"l": [{"name": "b"}]}, "application/merge-patch+json")["l"] == [{"name": "b"}]
    with pytest.raises(errors.UnsupportedMediaType):
        apply_patch(obj, {}, "text/plain")

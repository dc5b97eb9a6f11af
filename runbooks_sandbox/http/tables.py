"""``meta.k8s.io/v1`` Table responses: the columns ``kubectl get`` prints (priority 1 = -o wide).

Cells follow the API server's own printers (pkg/printers/internalversion) for the kinds the
runbooks use; other kinds get NAME and AGE.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from ..models.selectors import selector_to_string

Obj = dict[str, Any]
Column = tuple[str, str, int]  # (name, type, priority)


def human_age(timestamp: str | None, now: datetime | None = None) -> str:
    """Kubernetes' HumanDuration of the time since timestamp ("5m", "3h2m", "2d")."""
    if not timestamp:
        return "<unknown>"
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    seconds = int(((now or datetime.now(timezone.utc)) - then).total_seconds())
    if seconds < -1:
        return "<invalid>"
    seconds = max(seconds, 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    return f"{years}y{days % 365}d" if days < 365 * 8 and days % 365 else f"{years}y"


def _age(obj: Obj) -> str:
    return human_age(obj["metadata"].get("creationTimestamp"))


def _containers(obj: Obj) -> tuple[str, str]:
    containers = obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


def _pod_status(pod: Obj) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status", {})
    reason = status.get("reason") or status.get("phase", "Pending")
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state", {})
        if state.get("waiting", {}).get("reason"):
            return state["waiting"]["reason"]
        if state.get("terminated"):
            return state["terminated"].get("reason") or "Error"
    return reason


def _pod_row(pod: Obj) -> list[Any]:
    status = pod.get("status", {})
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for cs in statuses if cs.get("ready"))
    total = len(pod.get("spec", {}).get("containers", []))
    restarts = sum(cs.get("restartCount", 0) for cs in statuses)
    return [pod["metadata"]["name"], f"{ready}/{total}", _pod_status(pod), restarts, _age(pod),
            status.get("podIP") or "<none>", pod.get("spec", {}).get("nodeName") or "<none>", "<none>", "<none>"]


def _deployment_row(d: Obj) -> list[Any]:
    status, spec = d.get("status", {}), d.get("spec", {})
    containers, images = _containers(d)
    return [d["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _age(d),
            containers, images, selector_to_string(spec.get("selector"))]


def _replicaset_row(rs: Obj) -> list[Any]:
    status, spec = rs.get("status", {}), rs.get("spec", {})
    containers, images = _containers(rs)
    return [rs["metadata"]["name"], spec.get("replicas", 0), status.get("replicas", 0),
            status.get("readyReplicas", 0), _age(rs), containers, images,
            selector_to_string(spec.get("selector"))]


def _ports(service: Obj) -> str:
    ports = service.get("spec", {}).get("ports") or []
    if not ports:
        return "<none>"
    return ",".join(f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol', 'TCP')}"
                    for p in ports)


def _service_row(svc: Obj) -> list[Any]:
    spec = svc.get("spec", {})
    external = ",".join(spec.get("externalIPs") or []) or "<none>"
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>"
    return [svc["metadata"]["name"], spec.get("type", "ClusterIP"), spec.get("clusterIP") or "<none>",
            external, _ports(svc), _age(svc), selector]


def _endpoints_row(ep: Obj) -> list[Any]:
    addresses = []
    for subset in ep.get("subsets") or []:
        for address in subset.get("addresses") or []:
            for port in subset.get("ports") or [{}]:
                addresses.append(f"{address.get('ip')}:{port.get('port')}" if port else address.get("ip"))
    shown = ",".join(addresses[:3]) + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")
    return [ep["metadata"]["name"], shown or "<none>", _age(ep)]


def _event_row(ev: Obj) -> list[Any]:
    involved = ev.get("involvedObject", {})
    last = ev.get("lastTimestamp") or ev.get("eventTime") or ev["metadata"].get("creationTimestamp")
    return [human_age(last[:19] + "Z" if last else None), ev.get("type", ""), ev.get("reason", ""),
            f"{(involved.get('kind') or '').lower()}/{involved.get('name', '')}", ev.get("message", "")]


def _node_row(node: Obj) -> list[Any]:
    status = node.get("status", {})
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    roles = ",".join(k.split("/", 1)[1] for k in node["metadata"].get("labels", {})
                     if k.startswith("node-role.kubernetes.io/")) or "<none>"
    addresses = status.get("addresses") or []
    internal = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), "<none>")
    external = next((a["address"] for a in addresses if a.get("type") == "ExternalIP"), "<none>")
    info = status.get("nodeInfo", {})
    return [node["metadata"]["name"], "Ready" if ready else "NotReady", roles, _age(node),
            info.get("kubeletVersion", ""), internal, external, info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]


def _hpa_row(hpa: Obj) -> list[Any]:
    spec, status = hpa.get("spec", {}), hpa.get("status", {})
    ref = spec.get("scaleTargetRef") or {}
    current = {(m.get("resource") or {}).get("name"): m for m in status.get("currentMetrics") or []}
    targets = []
    for metric in spec.get("metrics") or []:
        resource = metric.get("resource") or {}
        wanted = (resource.get("target") or {}).get("averageUtilization")
        seen = ((current.get(resource.get("name")) or {}).get("resource") or {}).get("current", {})
        shown = f"{seen['averageUtilization']}%" if "averageUtilization" in seen else "<unknown>"
        targets.append(f"{resource.get('name', metric.get('type', ''))}: {shown}/{wanted}%")
    return [hpa["metadata"]["name"], f"{ref.get('kind', '')}/{ref.get('name', '')}", ", ".join(targets) or "<none>",
            spec.get("minReplicas", 1), spec.get("maxReplicas", 0), status.get("currentReplicas", 0), _age(hpa)]


def _ingress_row(ing: Obj) -> list[Any]:
    spec = ing.get("spec", {})
    hosts = ",".join(r.get("host") or "*" for r in spec.get("rules") or []) or "*"
    balancers = ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    address = ",".join(b.get("ip") or b.get("hostname") or "" for b in balancers)
    return [ing["metadata"]["name"], spec.get("ingressClassName") or "<none>", hosts, address,
            "80, 443" if spec.get("tls") else "80", _age(ing)]


def _virtualservice_row(vs: Obj) -> list[Any]:
    spec = vs.get("spec", {})
    return [vs["metadata"]["name"], str(spec.get("gateways") or []), str(spec.get("hosts") or []), _age(vs)]


def _job_row(job: Obj) -> list[Any]:
    spec, status = job.get("spec", {}), job.get("status", {})
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    state = ("Complete" if "Complete" in conditions else "Failed" if "Failed" in conditions
             else "Suspended" if spec.get("suspend") else "Running")
    start, end = status.get("startTime"), status.get("completionTime")
    duration = "" if not start else human_age(start, datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=timezone.utc)) if end else human_age(start)
    containers, images = _containers(job)
    return [job["metadata"]["name"], state, f"{status.get('succeeded', 0)}/{spec.get('completions', 1)}", duration,
            _age(job), containers, images, selector_to_string(spec.get("selector"))]


def _cronjob_row(cj: Obj) -> list[Any]:
    spec, status = cj.get("spec", {}), cj.get("status", {})
    template = {"spec": spec.get("jobTemplate", {}).get("spec", {})}
    containers, images = _containers(template)
    last = status.get("lastScheduleTime")
    return [cj["metadata"]["name"], spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            "True" if spec.get("suspend") else "False", len(status.get("active") or []),
            human_age(last) if last else "<none>", _age(cj), containers, images, "<none>"]


_NAME: Column = ("Name", "string", 0)
_AGE: Column = ("Age", "string", 0)
PRINTERS: dict[str, tuple[list[Column], Callable[[Obj], list[Any]]]] = {
    "pods": ([_NAME, ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "integer", 0), _AGE,
              ("IP", "string", 1), ("Node", "string", 1), ("Nominated Node", "string", 1),
              ("Readiness Gates", "string", 1)], _pod_row),
    "deployments": ([_NAME, ("Ready", "string", 0), ("Up-to-date", "integer", 0), ("Available", "integer", 0),
                     _AGE, ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)],
                    _deployment_row),
    "replicasets": ([_NAME, ("Desired", "integer", 0), ("Current", "integer", 0), ("Ready", "integer", 0), _AGE,
                     ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)],
                    _replicaset_row),
    "services": ([_NAME, ("Type", "string", 0), ("Cluster-IP", "string", 0), ("External-IP", "string", 0),
                  ("Port(s)", "string", 0), _AGE, ("Selector", "string", 1)], _service_row),
    "endpoints": ([_NAME, ("Endpoints", "string", 0), _AGE], _endpoints_row),
    "namespaces": ([_NAME, ("Status", "string", 0), _AGE],
                   lambda o: [o["metadata"]["name"], o.get("status", {}).get("phase", "Active"), _age(o)]),
    "secrets": ([_NAME, ("Type", "string", 0), ("Data", "integer", 0), _AGE],
                lambda o: [o["metadata"]["name"], o.get("type", "Opaque"), len(o.get("data") or {}), _age(o)]),
    "configmaps": ([_NAME, ("Data", "integer", 0), _AGE],
                   lambda o: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                              _age(o)]),
    "events": ([("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0),
                ("Object", "string", 0), ("Message", "string", 0)], _event_row),
    "leases": ([_NAME, ("Holder", "string", 0), _AGE],
               lambda o: [o["metadata"]["name"], o.get("spec", {}).get("holderIdentity", ""), _age(o)]),
    "nodes": ([_NAME, ("Status", "string", 0), ("Roles", "string", 0), _AGE, ("Version", "string", 0),
               ("Internal-IP", "string", 1), ("External-IP", "string", 1), ("OS-Image", "string", 1),
               ("Kernel-Version", "string", 1), ("Container-Runtime", "string", 1)], _node_row),
    "serviceaccounts": ([_NAME, ("Secrets", "integer", 0), _AGE],
                        lambda o: [o["metadata"]["name"], len(o.get("secrets") or []), _age(o)]),
    "horizontalpodautoscalers": ([_NAME, ("Reference", "string", 0), ("Targets", "string", 0),
                                  ("MinPods", "string", 0), ("MaxPods", "integer", 0), ("Replicas", "integer", 0),
                                  _AGE], _hpa_row),
    "ingresses": ([_NAME, ("Class", "string", 0), ("Hosts", "string", 0), ("Address", "string", 0),
                   ("Ports", "string", 0), _AGE], _ingress_row),
    "virtualservices": ([_NAME, ("Gateways", "string", 0), ("Hosts", "string", 0), _AGE], _virtualservice_row),
    "jobs": ([_NAME, ("Status", "string", 0), ("Completions", "string", 0), ("Duration", "string", 0), _AGE,
              ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)], _job_row),
    "cronjobs": ([_NAME, ("Schedule", "string", 0), ("Timezone", "string", 0), ("Suspend", "boolean", 0),
                  ("Active", "integer", 0), ("Last Schedule", "string", 0), _AGE, ("Containers", "string", 1),
                  ("Images", "string", 1), ("Selector", "string", 1)], _cronjob_row),
    "destinationrules": ([_NAME, ("Host", "string", 0), _AGE],
                         lambda o: [o["metadata"]["name"], o.get("spec", {}).get("host", ""), _age(o)]),
}
_DEFAULT = ([_NAME, _AGE], lambda o: [o["metadata"]["name"], _age(o)])


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def column_definitions(plural: str) -> list[Obj]:
    columns, _ = PRINTERS.get(plural, _DEFAULT)
    return [{"name": name, "type": kind, "format": "name" if name == "Name" else "",
             "description": name, "priority": priority} for name, kind, priority in columns]


def table(plural: str, objects: list[Obj], resource_version: str | None, *,
          include_object: str = "Metadata", with_columns: bool = True) -> Obj:
    """A Table of objects; ``with_columns=False`` for watch events after the first."""
    _, row = PRINTERS.get(plural, _DEFAULT)
    rows = []
    for obj in objects:
        entry: Obj = {"cells": row(obj)}
        partial = _row_object(obj, include_object)
        if partial is not None:
            entry["object"] = partial
        rows.append(entry)
    metadata = {"resourceVersion": resource_version} if resource_version else {}
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": column_definitions(plural) if with_columns else [], "rows": rows}


def wants_table(accept: str) -> bool:
    return "as=Table" in accept

"""The simulated Veza service that runs in every sandbox pod, its image catalog and its faults.

The pod runtime resolves a pod's image with :func:`load_image_catalog` (an unknown tag raises
:class:`ImagePullError`) and starts ``python -m runbooks_sandbox.workload --image ... --host ...
--port ... --fault-file ...``; the orchestrator drives incident drills with
:func:`inject_fault` / :func:`clear_fault` on that fault file.
"""
from .catalog import CatalogError, ImageBehaviour, ImageCatalog, ImagePullError, ResolvedImage, load_image_catalog
from .faults import Fault, clear_fault, inject_fault, read_fault
from .launch import WorkloadProcess, start_workload, workload_command
from .routes import API_ROUTES, routes_for

__all__ = [
    "API_ROUTES",
    "CatalogError",
    "Fault",
    "ImageBehaviour",
    "ImageCatalog",
    "ImagePullError",
    "ResolvedImage",
    "WorkloadProcess",
    "clear_fault",
    "inject_fault",
    "load_image_catalog",
    "read_fault",
    "routes_for",
    "start_workload",
    "workload_command",
]

"""The sandbox's image registry: which versions of each Veza service exist and how each behaves.

The catalog lives in ``parameters/sandbox.yaml`` under ``sandbox: images:`` (one entry per
service, one per tag). Resolving an image string that names an unknown repository, service or
tag raises :class:`ImagePullError`; the pod runtime reports it as ErrImagePull, then
ImagePullBackOff, exactly as a mistyped tag would on a real cluster.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runbooks_lib.config.paths import project_home

__all__ = [
    "DEFAULT_REPOSITORY",
    "CatalogError",
    "ImageBehaviour",
    "ImageCatalog",
    "ImagePullError",
    "ResolvedImage",
    "load_image_catalog",
    "parse_image",
]

# Used when no services.yaml sits next to the catalog (a test's own catalog file).
DEFAULT_REPOSITORY = "registry.veza.app"


class CatalogError(ValueError):
    """The catalog file itself is missing or invalid."""


class ImagePullError(LookupError):
    """The image does not exist in the sandbox's registry (unknown repository, service or tag).

    ``reason`` is one of ``repository``, ``service``, ``tag`` or ``reference`` (unparsable).
    The message reads like a container runtime's pull failure, so it can go into the pod's
    ``waiting.message`` as it is.
    """

    def __init__(self, image: str, reason: str, detail: str) -> None:
        super().__init__(f'failed to pull image "{image}": {detail}')
        self.image = image
        self.reason = reason


class ImageBehaviour(BaseModel):
    """How one image version behaves when it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_rate: float = Field(0.0, ge=0, le=1, description="Fraction of API requests answered 500")
    extra_latency_ms: float = Field(0.0, ge=0, description="Added to every API request")
    ready: bool = Field(True, description="False: /ready never says ready")
    crash_on_start: bool = Field(False, description="Exit at once with exit_code")
    start_delay_s: float = Field(0.3, ge=0, description="Time from start until /ready says ready")
    exit_code: int = Field(1, ge=1, le=255, description="Exit status of a crash")
    description: str = ""
    schema_: int | None = Field(
        None, alias="schema", ge=1,
        description="The newest veza_db migration the version ships and needs applied (checked by the backend at start)")
    commit_time: str | None = Field(
        None, description="UTC time of the version's commit (read by runbooks_lib.procedures.delivery for lead time)"
    )


@dataclass(frozen=True)
class ResolvedImage:
    """An image string resolved against the catalog."""

    image: str
    repository: str
    service: str
    version: str
    behaviour: ImageBehaviour


class ImageCatalog(BaseModel):
    """Every image the sandbox can run: ``images[service][version] -> behaviour``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repository: str = DEFAULT_REPOSITORY
    images: dict[str, dict[str, ImageBehaviour]]

    def versions(self, service: str) -> list[str]:
        """The tags that exist for a service (empty for an unknown service)."""
        return sorted(self.images.get(service, {}))

    def resolve(self, image: str) -> ResolvedImage:
        """Map ``<repository>/<service>:<version>`` to its behaviour, or raise ImagePullError."""
        repository, service, version = parse_image(image)
        if repository != self.repository:
            raise ImagePullError(
                image, "repository",
                f"pull access denied, repository does not exist: {repository or '(none)'}/{service}",
            )
        if service not in self.images:
            raise ImagePullError(image, "service", f"repository {repository}/{service} not found")
        behaviour = self.images[service].get(version)
        if behaviour is None:
            raise ImagePullError(image, "tag", f"manifest for {repository}/{service}:{version} not found")
        return ResolvedImage(image, repository, service, version, behaviour)


def parse_image(image: str) -> tuple[str, str, str]:
    """Split ``registry/path/name:tag`` into (repository, name, tag); no tag means ``latest``.

    Digest references (``@sha256:...``) are not in the sandbox's registry.
    """
    if not image or "@" in image or any(c.isspace() for c in image):
        raise ImagePullError(image, "reference", "invalid reference format")
    path, _, tag = image.rpartition(":")
    if "/" in tag or not path:  # the colon belonged to a registry port, not a tag
        path, tag = image, "latest"
    repository, _, name = path.rpartition("/")
    if not name or not tag:
        raise ImagePullError(image, "reference", "invalid reference format")
    return repository, name, tag


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as e:
        raise CatalogError(f"cannot read the image catalog {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise CatalogError(f"{path}: not valid YAML: {e}") from e


def load_image_catalog(path: str | Path | None = None) -> ImageCatalog:
    """Load and validate the catalog from a sandbox profile (default parameters/sandbox.yaml).

    The repository and the service names are checked against ``services.yaml`` in the same
    folder when there is one, so the catalog cannot drift from the service catalog.
    """
    path = Path(path) if path else project_home() / "parameters" / "sandbox.yaml"
    raw = _read_yaml(path)
    section = raw.get("sandbox") if isinstance(raw, dict) else None
    if not isinstance(section, dict) or not isinstance(section.get("images"), dict):
        raise CatalogError(f"{path}: no `sandbox: images:` section")
    services_file = path.parent / "services.yaml"
    known: dict[str, Any] | None = None
    repository = DEFAULT_REPOSITORY
    if services_file.is_file():
        services = _read_yaml(services_file) or {}
        repository = services.get("image_repository", DEFAULT_REPOSITORY)
        known = services.get("services") or {}
    try:
        catalog = ImageCatalog.model_validate({"repository": repository, "images": section["images"]})
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, i['loc']))}: {i['msg']}" for i in e.errors())
        raise CatalogError(f"{path}: invalid image catalog: {problems}") from None
    if known is not None and (unknown := sorted(set(catalog.images) - set(known))):
        raise CatalogError(f"{path}: images for services not in {services_file.name}: {', '.join(unknown)}")
    return catalog

"""Image references: which version an image runs. A leaf module (no project imports)."""
from __future__ import annotations

__all__ = ["version_of_image"]


def version_of_image(image: str | None) -> str | None:
    """The version an image reference runs: its tag, else its digest (short), else None.

    ``registry.veza.app/veza-backend-api:v1.6.0`` → ``v1.6.0``; ``...@sha256:9f86d0…`` →
    ``sha256:9f86d081884c``. A port in the registry host (``host:5000/x``) is not a tag.
    """
    if not image:
        return None
    if "@" in image:
        digest = image.rsplit("@", 1)[1]
        algorithm, _, value = digest.partition(":")
        return f"{algorithm}:{value[:12]}" if value else digest
    name = image.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[1] if ":" in name else None

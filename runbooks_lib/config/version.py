"""The project's version, in one place: pyproject.toml reads it from here (a dynamic version),
the package root re-exports it, and what needs it (a runner image's tag, a backup's tools) imports
it from here rather than from the package root above every room."""
from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"

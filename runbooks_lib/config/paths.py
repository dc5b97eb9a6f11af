"""Where the project lives: the folder holding parameters/ and notebooks/.

Standard library only, so the sandbox's workload processes can import it at every pod start.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_home"]


def project_home() -> Path:
    """``RUNBOOKS_HOME`` wins; otherwise the nearest parent of the working directory that has
    ``parameters/services.yaml`` (papermill runs kernels in the notebook's folder); otherwise
    the checkout this package was installed from."""
    if home := os.environ.get("RUNBOOKS_HOME"):
        return Path(home).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "parameters" / "services.yaml").is_file():
            return folder
    return Path(__file__).resolve().parents[2]  # runbooks_lib/config/paths.py

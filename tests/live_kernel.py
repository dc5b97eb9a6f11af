"""A real IPython kernel driven by jupyter_client, as JupyterLab drives one, on a profile of its own."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import yaml

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def live_kernel(home: Path, profile: dict[str, Any], **environment: str) -> Iterator[tuple[Any, Path]]:
    """A kernel whose project home is ``home`` with ``profile`` (and the shipped service catalog);
    ``environment`` is added to its environment. Yields the client and the records folder."""
    from jupyter_client.manager import start_new_kernel

    (home / "parameters").mkdir()
    (home / "parameters" / "services.yaml").write_text((REPO / "parameters" / "services.yaml").read_text())
    (home / "parameters" / f"{profile['name']}.yaml").write_text(yaml.safe_dump(profile))
    records = home / "records"
    env = {**os.environ, "RUNBOOKS_HOME": str(home), "RUNBOOKS_RECORDS_URL": str(records),
           "IPYTHONDIR": str(home / "ipython"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_CONFIG_DIR": str(home / "config"), **environment}
    env.pop("RUNBOOK_RUN_FILE", None)
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(home))
    try:
        yield kc, records
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

"""An interactive run's record: the cells an on-call engineer ran in JupyterLab, with their outputs.

A headless run's record is the notebook papermill executed. A run driven cell by cell in
JupyterLab has none: the file on disk holds what was saved, when it was saved, if it was. So the
kernel keeps its own. From ``start()`` on, every message the kernel sends to the notebook — each
executed cell's source, its streams, displays, results and errors, *after* the redaction
filters — is added to a notebook in memory (``SessionRecorder``). ``ctx.finish()`` (also reached
from a failing cell) writes it in a private workspace under the records folder and seals it into
place, named as ``runbook run`` names a record: scanned for secrets, exported to HTML, chained in
the ledger; a record the seal refuses goes to the quarantine (``records.quarantine``), not to the
records folder. Every change leaves
the same audit trail however it was run.

"Interactive" is a kernel started by Jupyter Server (JupyterLab, Notebook), which names the
notebook in ``JPY_SESSION_NAME``; ``runbook run`` and plain papermill write their own records.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["SessionRecorder", "interactive_session"]

_RECORDED = {"stream", "display_data", "execute_result", "error"}


def interactive_session() -> str | None:
    """The notebook Jupyter Server runs this kernel for, when it does and no runner is in charge."""
    if os.environ.get("RUNBOOK_RUN_FILE"):
        return None
    return os.environ.get("JPY_SESSION_NAME") or None


class SessionRecorder:
    """The cells executed in this kernel since ``start()``, as a notebook, as they were sent."""

    def __init__(self, notebook: str, earlier_sources: list[str]) -> None:
        import nbformat

        self.notebook = notebook
        self.nb = nbformat.v4.new_notebook()
        self.nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        self.nb.metadata["runbooks"] = {"recorded_from": notebook, "mode": "interactive (JupyterLab)"}
        self._cells: dict[str, Any] = {}  # execute request id -> its cell
        self._lock = threading.Lock()
        self.active = True
        # Cells run before start() (parameters, imports): their sources; their outputs were not seen.
        for source in earlier_sources:
            self.nb.cells.append(nbformat.v4.new_code_cell(source))

    def on_message(self, msg_type: str, content: dict[str, Any], parent: Any) -> None:
        """One message the kernel sends (already redacted): a new cell, or an output of one."""
        import nbformat
        from jupyter_client.session import extract_header

        if not self.active:
            return
        parent_id = (extract_header(parent) or {}).get("msg_id") if parent else None
        with self._lock:
            if msg_type == "execute_input":
                cell = nbformat.v4.new_code_cell(content.get("code", ""), execution_count=content.get("execution_count"))
                self.nb.cells.append(cell)
                if parent_id:
                    self._cells[parent_id] = cell
                return
            cell = self._cells.get(parent_id or "") or self._last_code_cell()
            if cell is None:
                return
            if msg_type == "clear_output":
                cell.outputs = []
            elif msg_type in _RECORDED:
                output = nbformat.v4.output_from_msg({"header": {"msg_type": msg_type}, "content": content})
                if output.get("output_type") == "stream" and cell.outputs and \
                        cell.outputs[-1].get("output_type") == "stream" and cell.outputs[-1].get("name") == output["name"]:
                    cell.outputs[-1]["text"] += output["text"]
                else:
                    cell.outputs.append(output)

    def _last_code_cell(self) -> Any:
        return next((c for c in reversed(self.nb.cells) if c.cell_type == "code"), None)

    def stop(self) -> None:
        self.active = False


def write_and_seal(recorder: SessionRecorder, record: Path, root: Path) -> str:
    """Write the session's notebook as ``record`` and seal it; one line saying what became of it."""
    import nbformat

    from ..errors import RunbookError
    from .quarantine import workspace, write_private
    from .redaction import redact, redact_object
    from .seal import SealRefused, seal_staged

    recorder.stop()
    # A message went out before a secret it holds was registered (a cell that registers one and
    # prints it): mask everything once more with every secret known by now.
    for cell in recorder.nb.cells:
        cell.source = redact(cell.source)
        if cell.cell_type == "code":
            cell.outputs = [nbformat.from_dict(redact_object(dict(o))) for o in cell.outputs]
    try:
        staged = write_private(workspace(root, record.stem) / record.name, nbformat.writes(recorder.nb))
        sealed = seal_staged(staged, record, root)
    except SealRefused as refused:
        return f"record NOT SEALED: {refused}"
    except (RunbookError, OSError) as e:
        return f"record NOT SEALED: {redact(str(e))}"
    return f"record: {sealed.record} (sealed, in the ledger)" + (f"; html: {sealed.html}" if sealed.html else "")

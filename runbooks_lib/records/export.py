"""HTML export of a record, for a reader without Jupyter.

The page opens with the run's summary (outcome, who, when, steps with their timings, the
failing step in red, measured figures, related records); each code cell's source is folded
into a ``<details>`` element (collapsed, one click to read it), outputs and plots follow
inline (images are embedded), and the cell where the run failed is preceded by a banner,
as papermill's own error banner does.

The page is inert (``records.inert``): whatever a cell or an output holds — Markdown a runbook
printed, HTML a pod's message ended up in — the export keeps no script, event handler,
``javascript:`` URL, frame, object or form, and forbids them with a Content-Security-Policy.
"""
from __future__ import annotations

import copy
import functools
import html
import threading
from pathlib import Path
from typing import Any

__all__ = ["export_html", "summary_html", "prepare_exporter"]

_OUTCOME_COLOURS = {"succeeded": "#1a7f37", "promoted": "#1a7f37", "failed": "#cf222e", "refused": "#9a6700",
                    "rejected": "#9a6700", "aborted": "#cf222e"}


def _row(label: str, value: Any) -> str:
    return f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(label)}</th><td>{html.escape(str(value))}</td></tr>"


def _figure(value: Any) -> Any:
    """A figure as a person reads it: 4.95, not 4.949999999999999 (the summary keeps the exact value)."""
    return f"{value:.6g}" if isinstance(value, float) else value


def summary_html(summary: dict[str, Any]) -> str:
    """The summary block that opens the page."""
    outcome = str(summary.get("outcome") or "unknown")
    colour = _OUTCOME_COLOURS.get(outcome, "#57606a")
    head = (
        f"<h1>{html.escape(str(summary.get('runbook')))} on {html.escape(str(summary.get('env')))}: "
        f"<span style='color:{colour}'>{html.escape(outcome)}</span></h1>"
    )
    facts = [("service", summary.get("service")), ("operator", summary.get("operator")),
             ("run id", summary.get("run_id")), ("started (UTC)", summary.get("started")),
             ("finished (UTC)", summary.get("finished")), ("duration (s)", summary.get("duration_s")),
             ("runbooks git sha", summary.get("git_sha")), ("notebook sha256", summary.get("notebook_sha256"))]
    parts = [head, "<table>", *(_row(k, v) for k, v in facts if v is not None), "</table>"]
    if summary.get("failed_step"):
        parts.append(
            f"<p style='color:#cf222e;font-weight:bold'>✗ failed at step “{html.escape(str(summary['failed_step']))}”: "
            f"{html.escape(str(summary.get('error') or ''))}</p>"
        )
    steps = summary.get("steps") or []
    if steps:
        parts.append("<h2>Steps</h2><table><tr><th>step</th><th>outcome</th><th>duration (s)</th></tr>")
        for step in steps:
            # A step replayed by a resumed run was done by the run it resumes: done, not failed.
            failed = step.get("outcome") not in ("succeeded", "running", "replayed", "skipped")
            style = " style='color:#cf222e;font-weight:bold'" if failed else ""
            mark = "✗ " if failed else {"replayed": "↺ ", "skipped": "– "}.get(str(step.get("outcome")), "")
            parts.append(
                f"<tr{style}><td>{mark}{html.escape(str(step.get('name')))}</td>"
                f"<td>{html.escape(str(step.get('outcome')))}</td><td>{step.get('duration_s')}</td></tr>"
            )
        parts.append("</table>")
    if summary.get("figures"):
        parts += ["<h2>Figures</h2><table>", *(_row(k, _figure(v)) for k, v in summary["figures"].items()), "</table>"]
    if summary.get("links"):
        parts += ["<h2>Related records</h2><ul>",
                  *(f"<li>{html.escape(str(l.get('relation')))}: {html.escape(str(l.get('record')))}</li>" for l in summary["links"]),
                  "</ul>"]
    return "\n".join(parts)


def _failing_cell(nb: Any) -> int | None:
    for index, cell in enumerate(nb.cells):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return index
    return None


def _presentable(nb: Any, summary: dict[str, Any] | None) -> Any:
    """A copy of the notebook arranged for reading: summary first, sources folded."""
    import nbformat

    nb = copy.deepcopy(nb)
    failing = _failing_cell(nb)
    cells = []
    if summary:
        cells.append(nbformat.v4.new_markdown_cell(summary_html(summary)))
    for index, cell in enumerate(nb.cells):
        if index == failing:
            step = (summary or {}).get("failed_step") or "this cell"
            cells.append(nbformat.v4.new_markdown_cell(
                f"<div style='background-color:#ffebe9;border-left:4px solid #cf222e;padding:.5em'>"
                f"<b>✗ The run failed here</b> (step “{html.escape(str(step))}”)</div>"))
        if cell.cell_type == "code" and cell.source.strip():
            cells.append(nbformat.v4.new_markdown_cell(
                f"<details><summary>code</summary><pre>{html.escape(cell.source)}</pre></details>"))
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            _inline_svg_as_image(output)
        cells.append(cell)
    nb.cells = cells
    return nb


def _inline_svg_as_image(output: Any) -> None:
    """An SVG figure is shown as an image (nbconvert would put the SVG markup in the page, where
    it could run); code that only the kernel could run (JavaScript, widgets) is left out."""
    from .inert import svg_as_image

    data = output.get("data")
    if not data:
        return
    if "image/svg+xml" in data and not any(k in data for k in ("image/png", "image/jpeg")):
        data["text/html"] = svg_as_image("".join(data["image/svg+xml"]))
    for mime in ("image/svg+xml", "application/javascript", "application/vnd.jupyter.widget-view+json"):
        data.pop(mime, None)


# nbconvert's exporter (its Jinja environment, its Markdown renderer) is shared by the warm-up
# thread and the export itself: they take turns.
_exporting = threading.Lock()


@functools.lru_cache(maxsize=1)
def _exporter() -> Any:
    """One exporter per process: its Jinja environment compiles the templates once (seconds)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = True  # the sources are shown folded, above their outputs
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    return exporter


def prepare_exporter() -> None:
    """Import nbconvert and render one tiny page, so the templates, Markdown and ANSI
    converters are loaded before the record is ready (``runbook run`` calls it while the
    runbook runs: it is most of an export's cost)."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# warm-up"),
                                         nbformat.v4.new_code_cell("1", outputs=[
                                             nbformat.v4.new_output("stream", name="stdout", text="\x1b[1mx\x1b[0m\n")])])
    from .inert import inert_page

    with _exporting:
        page, _ = _exporter().from_notebook_node(_presentable(nb, {"runbook": "warm-up", "outcome": "succeeded"}))
        inert_page(page, "warm-up")  # bleach and html5lib's imports too


def export_html(record: Path, target: Path | None = None) -> Path:
    """Write ``record``'s HTML export next to it (``.html``) and return its path."""
    import nbformat

    from .summary import read_summary

    record = Path(record)
    nb = nbformat.read(str(record), as_version=4)
    from .inert import inert_page

    with _exporting:  # the warm-up may still be rendering in its thread: one export at a time
        body, _ = _exporter().from_notebook_node(_presentable(nb, read_summary(record)),
                                              resources={"metadata": {"name": record.stem}})
    target = Path(target) if target else record.with_suffix(".html")
    target.write_text(inert_page(body, record.stem))
    return target

"""The page someone opens after a game day: ``<records>/gameday/<date>/index.html``.

One self-contained HTML file (plots embedded, links relative, so the folder can be copied or
published as is): every scenario with its outcome, what was expected, the platform's health
after it, its key figure, and links to its HTML record and post-mortem; the ledger's
verification; a timeline of the day; and the plots that matter, taken from the records
themselves (the canary's decisions, the incident's recovery, the DR drill), never redrawn from
other numbers.
"""
from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import RunbookError

if TYPE_CHECKING:
    from .gameday import ScenarioResult

__all__ = ["GamedayPage", "write_index"]

# Runbooks whose plots a reader of the page wants to see without opening the record.
_PLOTTED = ("canary_promotion", "incident_response", "dr_drill", "rollback", "delivery_metrics")

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Game day {{ page.env }} {{ page.date }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; width: 100%; margin: 1em 0; font-size: 0.92em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.yes { color: #176f2c; font-weight: 600; } .no { color: #b00020; font-weight: 600; }
.verdict { font-size: 1.3em; padding: 0.6em 1em; border-radius: 6px; display: inline-block; }
.ok { background: #e6f4ea; } .bad { background: #fde7e9; }
figure { margin: 1.5em 0; } figcaption { font-weight: 600; margin-bottom: 0.3em; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f6f6f6; padding: 0 0.2em; }
</style></head><body>
<h1>Game day on <code>{{ page.env }}</code>, {{ page.date }}</h1>
<p class="verdict {{ 'ok' if page.passed else 'bad' }}">
{% if page.passed %}Every scenario ended as expected{% else %}{{ page.unexpected }} scenario(s) did NOT end as expected{% endif %};
{{ page.failed_requests }} of {{ page.requests }} requests failed after the last scenario started.</p>
<p>From {{ page.began }} to {{ page.ended }} UTC ({{ page.duration }}). Ledger:
<span class="{{ 'yes' if not page.ledger_problems else 'no' }}">{{ page.ledger_summary }}</span></p>
{% if page.ledger_problems %}<ul>{% for p in page.ledger_problems %}<li>{{ p }}</li>{% endfor %}</ul>{% endif %}
<h2>Scenarios</h2>
<table><tr><th>#</th><th>scenario</th><th>runbook</th><th>outcome</th><th>expected</th><th>platform after</th>
<th>key figure</th><th>took</th><th>record</th></tr>
{% for row in page.rows %}<tr><td>{{ loop.index }}</td><td>{{ row.name }}</td><td>{{ row.runbook }}</td>
<td>{{ row.outcome }}</td><td class="{{ 'yes' if row.as_expected else 'no' }}">{{ row.verdict }}</td>
<td>{{ row.after }}</td><td>{{ row.figure }}</td><td>{{ row.took }}</td>
<td>{% for label, href in row.links %}<a href="{{ href }}">{{ label }}</a>{% if not loop.last %} · {% endif %}{% endfor %}</td></tr>
{% if row.error %}<tr><td></td><td colspan="8"><small>{{ row.error }}</small></td></tr>{% endif %}
{% endfor %}</table>
<h2>Timeline</h2>
<img alt="timeline of the scenarios" src="data:image/png;base64,{{ page.timeline }}">
{% if page.plots %}<h2>Plots from the records</h2>
{% for plot in page.plots %}<figure><figcaption>{{ plot.caption }}</figcaption>
<img alt="{{ plot.caption }}" src="data:image/png;base64,{{ plot.png }}"></figure>{% endfor %}{% endif %}
</body></html>
"""


@dataclass
class GamedayPage:
    path: Path
    passed: bool


def _relative(target: Path, folder: Path) -> str:
    return Path(os.path.relpath(target, folder)).as_posix()


def _record_links(record: Path | None, folder: Path) -> list[tuple[str, str]]:
    """Links to the record's HTML (else the notebook) and its attachments' HTML (a post-mortem)."""
    from ...records.ledger import attachments_of

    if record is None or not record.is_file():
        return []
    html = record.with_suffix(".html")
    links = [("record", _relative(html if html.is_file() else record, folder))]
    for attachment in attachments_of(record):
        if attachment.suffix == ".html":
            label = attachment.with_suffix("").name.removeprefix(record.with_suffix("").name + "-")
            links.append((label, _relative(attachment, folder)))
    return links


def _record_plots(record: Path | None, limit: int = 2) -> list[str]:
    """The last ``limit`` PNG plots a record holds (base64, as stored): its conclusions."""
    import nbformat

    if record is None or not record.is_file():
        return []
    nb = nbformat.read(str(record), as_version=4)
    pngs = [str(output["data"]["image/png"]).replace("\n", "") for cell in nb.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
    return pngs[-limit:]


def _timeline_png(results: list["ScenarioResult"]) -> str:
    """One bar per scenario, from its start to its end, green when as expected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in results if r.started and r.ended]
    fig, ax = plt.subplots(figsize=(11, 0.45 * max(len(timed), 1) + 1))
    if timed:
        origin = timed[0].started
        for row, r in enumerate(timed):
            start = (r.started - origin).total_seconds()
            ax.barh(row, (r.ended - r.started).total_seconds(), left=start,
                    color="#2e7d32" if r.as_expected else "#c62828")
        ax.set_yticks(range(len(timed)), [r.scenario.name for r in timed], fontsize=8)
        ax.invert_yaxis()
    ax.set_xlabel("seconds since the game day began")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def write_index(results: list["ScenarioResult"], env: str, *, failed_requests: int, requests: int,
                root: Path | None = None) -> GamedayPage:
    """Write ``<records root>/gameday/<date>/index.html`` and say whether the day passed."""
    import jinja2

    from ...records.ledger import Ledger, records_root
    from ...records.redaction import FingerprintStore
    from ...records.seal import scan_text

    root = Path(root) if root is not None else records_root(env)
    began = next((r.started for r in results if r.started), datetime.now(timezone.utc))
    ended = max((r.ended for r in results if r.ended), default=began)
    folder = root / "gameday" / began.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(root)
    problems = [str(p) for p in ledger.verify()]
    rows, plots = [], []
    for r in results:
        took = f"{(r.ended - r.started).total_seconds():.0f} s" if r.started and r.ended else ""
        rows.append({"name": r.scenario.name, "runbook": Path(r.scenario.notebook).stem, "outcome": r.outcome,
                     "as_expected": r.as_expected, "verdict": r.expectation, "after": r.platform_after, "took": took,
                     "figure": f"{r.scenario.figure} = {r.figure}" if r.scenario.figure else "",
                     "links": _record_links(r.record, folder), "error": r.error if not r.as_expected else None})
        if Path(r.scenario.notebook).stem in _PLOTTED:
            plots += [{"caption": f"{r.scenario.name} ({'as expected' if r.as_expected else 'NOT as expected'})",
                       "png": png} for png in _record_plots(r.record)]
    unexpected = sum(1 for r in results if not r.as_expected)
    passed = unexpected == 0 and failed_requests == 0 and not problems
    seconds = (ended - began).total_seconds()
    page = {
        "env": env, "date": began.strftime("%Y-%m-%d"), "passed": passed, "unexpected": unexpected,
        "failed_requests": failed_requests, "requests": requests,
        "began": began.strftime("%H:%M:%S"), "ended": ended.strftime("%H:%M:%S"),
        "duration": f"{int(seconds // 60)} min {seconds % 60:.0f} s",
        "ledger_problems": problems,
        "ledger_summary": (f"{len(ledger.entries())} sealed record(s) intact" if not problems
                           else f"{len(problems)} problem(s)"),
        "rows": rows, "timeline": _timeline_png(results), "plots": plots,
    }
    html = jinja2.Environment(autoescape=True).from_string(_TEMPLATE).render(page=page)
    leaks = scan_text(html, "index.html", FingerprintStore.default().finder())
    if leaks:  # the page quotes errors and plots from records: the same rule as a record's seal
        raise RunbookError(f"not writing {folder / 'index.html'}: it would show {leaks[0].what} ({leaks[0].excerpt})")
    path = folder / "index.html"
    path.write_text(html)
    return GamedayPage(path, passed)

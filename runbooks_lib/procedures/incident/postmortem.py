"""The post-mortem draft: REFERENCES.md's template, with everything measured filled in.

What the run knows is written (header, impact in numbers, trigger as correlated, detection,
resolution, the UTC timeline, time to detect / acknowledge / mitigate / recover, missing
evidence); what only people know (root causes, lessons, action items) is clearly marked as
theirs, and the action-item table is left empty. Rendered as Markdown and as a standalone
HTML page (mistune), both written next to the record.

Every field that comes from a person (the summary, the commander) or from the cluster (event
messages, change causes, findings) is escaped as it enters the Markdown (``escape_markdown``):
in the ``.md`` as in any renderer that reads it, such a field is text, never HTML, a link, an
image or a heading. The HTML page is made inert besides (``records.inert``).
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from ...records.inert import CSP, inert_fragment
from ...records.redaction import redact
from .timeline import Timeline, iso

__all__ = ["PostMortem", "FOR_PEOPLE", "render_markdown", "render_html", "escape_markdown"]

class Md(str):
    """Markdown written by this module (a marker, a bold label): put in a table as it is."""


FOR_PEOPLE = Md("✍ **For the responders to write.**")
ACTION_ITEM_COLUMNS = ("action", "type (prevent / detect / mitigate)", "owner", "priority", "due", "ticket")


# Characters Markdown gives a meaning to anywhere in a line (emphasis, code, links and images,
# strikethrough, escapes): each is escaped with a backslash; ``<`` and ``&`` become entities.
_MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]!~])")
# What makes a line a block when it starts one (a heading, a list, a quote, a rule, an ordered list).
_BLOCK_START = re.compile(r"^(\s*)(\d{1,9}(?=[.)](?:\s|$))|)([#+\-*>=.)])")


def escape_markdown(value: Any, *, in_table: bool = False) -> str:
    """``value`` as Markdown text that renders as exactly that text: HTML escaped as entities, the
    punctuation Markdown acts on escaped, line breaks turned to spaces (a field never starts a block
    of its own), and in a table cell ``|`` too."""
    text = " ".join(str("" if value is None else value).replace("\r", "\n").split("\n")).replace("\x00", "")
    text = _MARKDOWN_INLINE.sub(r"\\\1", html.escape(text, quote=False))
    text = _BLOCK_START.sub(lambda m: f"{m.group(1)}{m.group(2)}\\{m.group(3)}", text)
    return text.replace("|", "\\|") if in_table else text


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return f"{value:.1f}{unit}"
    return f"{value}{unit}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table (``header`` is this module's); every cell escaped unless it is an ``Md``."""
    def cell(v: Any) -> str:
        return v.replace("\n", " ") if isinstance(v, Md) else escape_markdown(v, in_table=True)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


@dataclass
class PostMortem:
    """Everything the draft says; built by the incident run, rendered here."""

    incident_id: str
    title: str
    severity: str
    env: str
    services: list[str]
    commander: str
    scribe: str
    communications: str
    triggered_at: datetime
    timeline: Timeline
    figures: dict[str, Any] = field(default_factory=dict)
    trigger: str = ""
    detection: str = ""
    resolution: str = ""
    impact_notes: list[str] = field(default_factory=list)
    supporting: list[str] = field(default_factory=list)
    status: str = "draft"

    def header_rows(self) -> list[tuple[str, str]]:
        return [
            ("incident", self.incident_id), ("severity", self.severity), ("status", self.status),
            ("environment", self.env), ("services affected", ", ".join(self.services) or "none identified"),
            ("incident commander", self.commander or "not named"), ("scribe", self.scribe or "not named"),
            ("communications", self.communications or "not named"), ("owner of this post-mortem", self.commander or "not named"),
            ("triggered (UTC)", iso(self.triggered_at)),
        ]


def render_markdown(pm: PostMortem) -> str:
    e = escape_markdown  # every field from a person or the cluster passes through it
    lines = [f"# Post-mortem (draft): {e(pm.title)}", "",
             "> Drafted by the incident-response runbook from the run and the cluster's evidence. "
             "Sections marked ✍ are for people to write.", ""]
    lines += _table(("", ""), pm.header_rows())
    lines += ["", "## Summary", "", f"{e(pm.severity)} on {e(pm.env)}: {e(pm.title)}.", "",
              FOR_PEOPLE + " What happened, in two sentences.", ""]
    lines += ["## Impact", ""] + _impact(pm)
    lines += [""] + [f"- {e(note)}" for note in pm.impact_notes] + [""]
    lines += ["## Trigger", "", e(pm.trigger) or "No change correlated with the incident.", ""]
    lines += ["## Root causes and contributing factors", "", FOR_PEOPLE + " The trigger above is a correlation, not a root cause.", ""]
    lines += ["## Detection", "", e(pm.detection) or "—", ""]
    lines += ["## Resolution", "", e(pm.resolution) or "No mitigation was executed by the runbook.", "",
              FOR_PEOPLE + " The permanent fix, if the mitigation is not one.", ""]
    lines += ["## Timeline (UTC)", ""]
    lines += _table(("UTC", "T", "what", "source", "detail"),
                    [(r["UTC"], r["T"], r["what"], r["source"], r["detail"]) for r in pm.timeline.rows(pm.triggered_at)])
    if pm.timeline.missing:
        lines += ["", "Evidence that could not be read: " + "; ".join(e(m) for m in pm.timeline.missing) + "."]
    lines += ["", "## Metrics", ""] + _metrics(pm.figures)
    lines += ["", "MTTR here runs from `triggered_at` to the first measurement with every signal back within its SLO.", ""]
    lines += ["## Lessons", "", "### What went well", "", FOR_PEOPLE, "", "### What went wrong", "", FOR_PEOPLE, "",
              "### Where we got lucky", "", FOR_PEOPLE, ""]
    lines += ["## Action items", "", FOR_PEOPLE + " One row per action.", ""]
    lines += _table(ACTION_ITEM_COLUMNS, [])
    lines += ["", "## Supporting information", ""] + [f"- {e(item)}" for item in pm.supporting] + [""]
    # User-given text (title, summary) passes the same filter as every record output.
    return redact("\n".join(lines))


def _impact(pm: PostMortem) -> list[str]:
    f = pm.figures
    return _table(("measure", "value"), [
        ("duration (triggered → recovered)", _fmt(f.get("time_to_recover_s"), " s")),
        ("failed requests", _fmt(f.get("failed_requests"))),
        ("requests during the incident", _fmt(f.get("requests_during_incident"))),
        ("lowest success rate", _fmt(None if f.get("worst_success_rate") is None else 100 * f["worst_success_rate"], " %")),
        ("services affected", ", ".join(pm.services) or "none identified"),
        ("users affected", Md("not measured here: " + FOR_PEOPLE)),
        ("data lost", Md("none known: " + FOR_PEOPLE)),
    ])


def _metrics(f: dict[str, Any]) -> list[str]:
    return _table(("metric", "seconds", "target"), [
        ("time to detect (signals degraded → triggered)", _fmt(f.get("time_to_detect_s")), ""),
        ("time to acknowledge", _fmt(f.get("time_to_acknowledge_s")), Md("< 300 (guide §12.3)")),
        ("time to mitigate", _fmt(f.get("time_to_mitigate_s")), ""),
        ("time to recover (signals back within SLO)", _fmt(f.get("time_to_recover_s")), Md("< 300 (MTTR goal)")),
    ])


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.45}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #d0d7de;padding:.25em .6em;text-align:left;vertical-align:top}}
blockquote{{color:#57606a;border-left:4px solid #d0d7de;margin:0;padding-left:1em}}</style></head>
<body>
{body}
</body></html>
"""


def render_html(markdown_text: str, title: str) -> str:
    """A standalone page from the Markdown (tables included), inert whatever the Markdown holds."""
    import mistune

    body = mistune.create_markdown(escape=True, plugins=["table"])(markdown_text)
    return _PAGE.format(csp=CSP, title=html.escape(title), body=inert_fragment(body))

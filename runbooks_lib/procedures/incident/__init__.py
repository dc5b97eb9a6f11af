"""Incident response: snapshot, golden signals, change correlation, guarded mitigation,
notices, timeline and the post-mortem draft (the guide's §12.3)."""
from __future__ import annotations

from .correlation import Change, RankedChange, Suggestion, breach_start, rank_changes, suggest
from .params import IncidentParams, SEVERITIES
from .postmortem import PostMortem, render_html, render_markdown
from .response import IncidentResponse
from .timeline import Moment, Timeline

__all__ = [
    "Change", "RankedChange", "Suggestion", "breach_start", "rank_changes", "suggest",
    "IncidentParams", "SEVERITIES", "PostMortem", "render_html", "render_markdown",
    "IncidentResponse", "Moment", "Timeline",
]

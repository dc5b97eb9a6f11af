"""#25.4: a record's HTML and a post-mortem are inert by construction, not by luck.

The HTML export keeps no script, event handler, ``javascript:`` URL, frame, object, embed or form,
whatever a Markdown cell, a Markdown or HTML output or an SVG figure holds. The post-mortem's
Markdown escapes every field that comes from a person or the cluster, so even a renderer that lets
raw HTML through (as many Markdown viewers do) shows it as text; its HTML page is inert too.
Pages are parsed here with html5lib, the parsing algorithm browsers implement.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bleach._vendor import html5lib  # bleach's own copy of html5lib: the browser's parsing algorithm

ACTIVE_ELEMENTS = {"script", "iframe", "frame", "object", "embed", "form", "input", "button", "textarea", "applet",
                   "base", "link", "meta-refresh", "svg", "math"}
PAYLOADS = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<a href=\"javascript:alert(1)\">x</a>",
    "[x](javascript:alert(1))", "![x](javascript:alert(1))", "<iframe src=//evil></iframe>", "<object data=x>",
    "<embed src=x>", "<form action=//evil><input name=q></form>", "<svg onload=alert(1)>", "<details open ontoggle=alert(1)>",
    "<a href=\" jav&#x09;ascript:alert(1)\">x</a>", "<scr<script>ipt>alert(1)</script>", "<!--<script>-->",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">", "<style>@import 'javascript:alert(1)'</style>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>", "\n# heading\n", "| a | b |\n|---|---|",
    "<https://evil/>", "javascript:alert(1)", "<a href='data:text/html,<script>alert(1)</script>'>x</a>", "`code`",
    "<body onload=alert(1)>", "<meta http-equiv=refresh content='0;url=javascript:alert(1)'>", "&lt;script&gt;",
]
hostile = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(st.sampled_from(PAYLOADS), st.text(max_size=8)), min_size=1, max_size=6).map("".join),
)


def active_parts(page: str) -> list[str]:
    """Everything in ``page`` that a browser would run or submit: script-ish elements, event
    handler attributes, javascript:/vbscript:/data:text URLs."""
    found = []
    for element in html5lib.parse(page, namespaceHTMLElements=False).iter():
        tag = str(element.tag).rsplit("}", 1)[-1].lower()
        if tag in ACTIVE_ELEMENTS:
            found.append(f"<{tag}>")
        if tag == "meta" and "refresh" in (element.get("http-equiv") or "").lower():
            found.append("<meta refresh>")
        for name, value in element.attrib.items():
            name = str(name).rsplit("}", 1)[-1].lower()
            squeezed = "".join(ch for ch in str(value).lower() if ch > " ")
            if name.startswith("on"):
                found.append(f"<{tag} {name}=...>")
            elif squeezed.startswith(("javascript:", "vbscript:", "data:text")):
                found.append(f"<{tag} {name}={squeezed[:20]}>")
    return found


# -- the post-mortem ---------------------------------------------------------------------------------

T0 = datetime(2026, 12, 1, 14, 0, tzinfo=timezone.utc)


def _postmortem(summary: str, commander: str, event: str, cause: str, finding: str):
    from runbooks_lib.procedures.incident.postmortem import PostMortem
    from runbooks_lib.procedures.incident.timeline import Timeline

    timeline = Timeline()
    timeline.add(T0, "triggered")
    timeline.add(T0 + timedelta(seconds=5), event, source="event", detail=event)
    return PostMortem(incident_id="abc123", title=summary, severity="P1", env="sandbox", services=["veza-backend-api"],
                      commander=commander, scribe="bob", communications="", triggered_at=T0, timeline=timeline,
                      figures={"failed_requests": 3}, trigger=f"Most likely: {cause}", detection=summary,
                      resolution=f"rolled back: {cause}", impact_notes=[finding], supporting=[f"cause: {cause}"])


def _markdown_as_a_permissive_viewer_shows_it(text: str) -> str:
    """The draft as a viewer that lets raw HTML through renders it (mistune without escaping)."""
    import mistune

    return mistune.create_markdown(escape=False, plugins=["table"])(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(summary=hostile, commander=hostile, event=hostile, cause=hostile, finding=hostile)
def test_no_field_of_a_post_mortem_can_put_a_script_or_a_handler_in_it(summary: str, commander: str, event: str,
                                                                         cause: str, finding: str) -> None:
    from runbooks_lib.procedures.incident.postmortem import render_html, render_markdown

    text = render_markdown(_postmortem(summary, commander, event, cause, finding))
    assert active_parts(_markdown_as_a_permissive_viewer_shows_it(text)) == []
    assert active_parts(render_html(text, summary)) == []


def test_a_post_mortem_field_stays_in_its_place() -> None:
    from runbooks_lib.procedures.incident.postmortem import render_markdown

    text = render_markdown(_postmortem("x\n\n## Root causes\n\n- [click](javascript:alert(1))", "<b>eve</b>",
                                       "pod OOMKilled | exit 137", "deploy of v1.5.1", "1. not a list"))
    headings = [line for line in text.splitlines() if line.startswith("## Root causes")]
    assert len(headings) == 1  # the summary did not start a heading of its own
    assert "<b>" not in text and "&lt;b&gt;eve&lt;/b&gt;" in text
    assert "pod OOMKilled \\| exit 137" in text  # a table cell is not split
    assert "- 1\\. not a list" in text


# -- the record's HTML export --------------------------------------------------------------------------

def _record(path: Path, text: str) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show(text)")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"text/markdown": text, "text/plain": "md"}),
        nbformat.v4.new_output("display_data", data={"text/html": text, "text/plain": "html"}),
        nbformat.v4.new_output("display_data", data={"application/javascript": "alert(1)", "text/plain": "js"}),
        nbformat.v4.new_output("display_data", data={"image/svg+xml": "<svg onload='alert(1)'><script>alert(2)</script></svg>",
                                                     "text/plain": "figure"}),
        nbformat.v4.new_output("stream", name="stdout", text=text),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell(text), cell]
    nbformat.write(nb, str(path))
    return path


def test_the_export_of_a_hostile_record_is_inert_and_forbids_scripts(tmp_path: Path) -> None:
    from runbooks_lib.records.export import export_html

    page = export_html(_record(tmp_path / "r.ipynb", "\n".join(PAYLOADS))).read_text()
    assert active_parts(page) == []
    assert "Content-Security-Policy" in page and "script-src" not in page and "default-src 'none'" in page
    assert "data:image/svg+xml;base64," in page  # the SVG figure is still shown, as an image


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=hostile)
def test_no_markdown_cell_or_output_can_put_a_script_in_the_export(tmp_path: Path, text: str) -> None:
    from runbooks_lib.records.export import export_html

    assert active_parts(export_html(_record(tmp_path / "r.ipynb", text)).read_text()) == []


def test_the_checker_sees_what_it_must() -> None:
    # the property tests are only as good as this: it must name each kind of active part
    page = ("<p onclick=x>a</p><script>1</script><a href=' JavaScript:x'>b</a><iframe></iframe><form></form>"
            "<meta http-equiv=refresh content=0>")
    assert sorted(active_parts(page)) == sorted(["<p onclick=...>", "<script>", "<a href=javascript:x>", "<iframe>",
                                                 "<form>", "<meta refresh>"])

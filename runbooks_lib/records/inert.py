"""HTML that cannot act: what a record's export and a post-mortem page may contain.

A record's HTML is opened in a browser, often straight from the team's archive, where every
record shares one origin: a script in one (a Markdown output, a pod's event message, an incident
summary typed by someone) would run with access to them all. So the page is made inert, not
trusted to be:

- its body is cleaned with ``bleach`` (html5lib's parser, the one browsers follow) against an
  allowlist: text formatting, headings, lists, tables, ``details``, images from ``data:image/``
  URLs, links to http(s), mailto and anchors, inline styles limited to harmless properties. No
  script, no event handler attribute, no ``javascript:`` URL, no iframe, object or embed, no form,
  no SVG or MathML (an SVG plot is shown as an image, where it cannot run anything);
- the head is rebuilt here: a charset, a title and the exporter's own stylesheets (nbconvert's
  template also adds require.js, MathJax and widget scripts: none is kept);
- a Content-Security-Policy meta forbids scripts, frames, forms and any remote load outright: a
  browser that parsed something differently from html5lib would still run and fetch nothing.
"""
from __future__ import annotations

import html
import re
import threading
from typing import Any

__all__ = ["CSP", "inert_fragment", "inert_page", "svg_as_image"]

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
       "form-action 'none'; frame-ancestors 'none'; base-uri 'none'")

TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div", "dl",
    "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li",
    "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody",
    "td", "tfoot", "th", "thead", "tr", "u", "ul", "var",
})
_COMMON = ("class", "id", "style", "title", "align", "dir", "lang")
ATTRIBUTES = {"a": ("href", "name"), "img": ("src", "alt", "width", "height"), "td": ("colspan", "rowspan", "valign"),
              "th": ("colspan", "rowspan", "scope", "valign"), "ol": ("start", "type"), "details": ("open",),
              "table": ("border", "cellpadding", "cellspacing")}
# No property that can name a URL (background, list-style, cursor, content, border-image).
CSS_PROPERTIES = frozenset({
    "background-color", "border", "border-bottom", "border-collapse", "border-color", "border-left", "border-right",
    "border-spacing", "border-style", "border-top", "border-width", "color", "display", "font-family", "font-size",
    "font-style", "font-weight", "height", "line-height", "margin", "margin-bottom", "margin-left", "margin-right",
    "margin-top", "max-width", "min-width", "overflow", "padding", "padding-bottom", "padding-left", "padding-right",
    "padding-top", "text-align", "text-decoration", "vertical-align", "white-space", "width", "word-break",
})
_DATA_IMAGE = re.compile(r"data:image/(?:png|jpeg|gif|webp|svg\+xml);base64,[A-Za-z0-9+/=\s]*\Z", re.I)
_SAFE_HREF = re.compile(r"(?:https?://|mailto:|#|[^:/?#]*(?:[/?#]|\Z))", re.I)
# Removed with their content before cleaning (bleach would keep a script's text as visible text).
_DROPPED = ("script", "style", "noscript", "template", "iframe", "object", "embed", "frameset", "noembed",
            "svg", "math", "textarea", "select", "title", "head")


def _allowed(tag: str, name: str, value: str) -> bool:
    """bleach's attribute filter: the allowlist, and URLs that can only show an image or go to a page."""
    if name not in _COMMON and name not in ATTRIBUTES.get(tag, ()):
        return False
    if tag == "img" and name == "src":
        return bool(_DATA_IMAGE.match(value.strip()))
    if tag == "a" and name == "href":
        return bool(_SAFE_HREF.match(value.strip()))
    return True


_per_thread = threading.local()


def _cleaner() -> Any:
    """This thread's cleaner: a bleach Cleaner is not thread-safe (``runbook run`` warms the export
    up in a background thread while the runbook runs, and may export in the main one meanwhile)."""
    cleaner = getattr(_per_thread, "cleaner", None)
    if cleaner is None:
        import bleach
        from bleach.css_sanitizer import CSSSanitizer

        cleaner = _per_thread.cleaner = bleach.Cleaner(
            tags=TAGS, attributes=_allowed, protocols={"http", "https", "mailto", "data"}, strip=True,
            strip_comments=True, css_sanitizer=CSSSanitizer(allowed_css_properties=CSS_PROPERTIES))
    return cleaner


def _drop_active_elements(markup: str) -> str:
    """``markup`` without the elements whose content is code or a foreign document (a cosmetic pass:
    the cleaning after it is what keeps the page inert, whatever this pass leaves)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "html.parser")
    for element in soup.find_all(_DROPPED):
        element.decompose()
    return str(soup)


def inert_fragment(markup: str) -> str:
    """A fragment of HTML with everything that could act removed (see the module's docstring)."""
    return _cleaner().clean(_drop_active_elements(markup))


_STYLE = re.compile(r"<style[^>]*>(.*?)</style\s*>", re.S | re.I)
_BODY = re.compile(r"<body([^>]*)>(.*)</body\s*>", re.S | re.I)
_CLASS = re.compile(r"""\bclass\s*=\s*["']([\w\s-]*)["']""")


def inert_page(page: str, title: str) -> str:
    """A whole page (nbconvert's) rebuilt inert: its stylesheets, its body cleaned, a strict CSP."""
    body_match = _BODY.search(page)
    head = page[: body_match.start()] if body_match else ""
    body = body_match.group(2) if body_match else page
    body_class = _CLASS.search(body_match.group(1)) if body_match else None
    # The exporter's own CSS; a "<" in it could only be an attempt to close the element early.
    css = "\n".join(block.replace("<", "\\3c ") for block in _STYLE.findall(head))
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
        f"<title>{html.escape(title)}</title>\n<style>\n{css}\n</style>\n</head>\n"
        f"<body class=\"{body_class.group(1) if body_class else ''}\">\n{inert_fragment(body)}\n</body>\n</html>\n"
    )


def svg_as_image(svg: str) -> str:
    """An SVG output as an ``<img>`` (a data: URL): shown, but never run as part of the page."""
    import base64

    return f"<img src=\"data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()}\" alt=\"figure\">"

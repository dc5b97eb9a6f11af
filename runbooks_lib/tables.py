"""Tables with a title, for the record: a person reads the title first, in HTML and in plain text."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Titled", "titled", "show_tables"]


class Titled:
    """A DataFrame and its title; renders as a captioned table in JupyterLab and in the HTML export."""

    def __init__(self, title: str, frame: "pd.DataFrame") -> None:
        self.title = title
        self.frame = frame

    def _repr_html_(self) -> str:
        return f"<h4>{html.escape(self.title)}</h4>\n{self.frame.to_html()}"

    def __repr__(self) -> str:
        return f"{self.title}\n{self.frame.to_string()}"


def titled(title: str, frame: "pd.DataFrame") -> Titled:
    return Titled(title, frame)


def show_tables(tables: Mapping[str, "pd.DataFrame"], titles: Mapping[str, str] | None = None) -> None:
    """Display each table under its title (in a kernel), or print it (elsewhere)."""
    import sys

    titles = titles or {}
    ipython = sys.modules.get("IPython")
    shell: Any = ipython.get_ipython() if ipython is not None else None
    for name, frame in tables.items():
        item = Titled(titles.get(name, name), frame)
        if shell is not None:
            from IPython.display import display

            display(item)
        else:
            print(repr(item))

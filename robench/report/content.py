"""What a report page is made of: sections holding text, notes, figures and tables.

The HTML and Markdown renderers (:mod:`robench.report.html`) walk the same
:class:`Page`, so the two outputs always carry the same content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class FigureFile:
    """A written figure: its PNG and SVG files and a caption."""

    name: str
    caption: str
    png: Path
    svg: Path


@dataclass
class TableView:
    """A table as displayed (already pivoted and formatted), with the files it was saved to."""

    name: str
    title: str
    frame: pd.DataFrame
    note: str = ""
    collapsed: bool = False  # long tables: HTML shows them in a <details> block


@dataclass
class Section:
    """One section of the page. ``notes`` are warnings and "missing: run ..." lines."""

    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[FigureFile] = field(default_factory=list)
    tables: list[TableView] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)


@dataclass
class Page:
    """A whole report: a title, a one-line summary and the sections in order."""

    title: str
    summary: list[str]
    sections: list[Section]

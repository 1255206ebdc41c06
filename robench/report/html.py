"""Rendering a :class:`~robench.report.content.Page` as one self-contained HTML file and
as Markdown.

The HTML page needs nothing beside it: the CSS is inline, there is no script, and every
figure is embedded as a base64 PNG data URI. The Markdown version holds the same text and
tables and links the figures by relative path (``figures/<name>.png``). Text may use
`backticks` for code; everything else is escaped.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from robench.report.content import FigureFile, Page, Section, TableView
from robench.report.tables import to_markdown

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2329;background:#fff;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:1.5rem 2rem 4rem}
h1{font-size:1.7rem;margin:.2rem 0 .6rem}h2{font-size:1.3rem;margin-top:2.4rem;border-bottom:2px solid #e3e7eb;padding-bottom:.25rem}
h3{font-size:1.05rem;margin:1.4rem 0 .4rem}
nav{background:#f5f7f9;border:1px solid #e3e7eb;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}
nav a{margin-right:1rem;white-space:nowrap;color:#22577a;text-decoration:none}
.summary li{margin:.15rem 0}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:.4rem .8rem;margin:.5rem 0;border-radius:3px}
.tablewrap{overflow-x:auto;margin:.4rem 0 .8rem}
table{border-collapse:collapse;font-size:.82rem;font-variant-numeric:tabular-nums}
th,td{border:1px solid #dde2e6;padding:.22rem .5rem;text-align:right;white-space:nowrap}
th{background:#f0f3f5;position:sticky;top:0;white-space:normal;vertical-align:bottom}
td.text,th.text{text-align:left}
td.wrap,th.wrap{white-space:normal;overflow-wrap:anywhere;min-width:9rem;max-width:24rem;text-align:left}
tr:nth-child(even) td{background:#fafbfc}
td.supported{background:#d8f3dc!important;font-weight:600}
td.contradicted{background:#ffd9d9!important;font-weight:600}
td.inconclusive{background:#eceff1!important}
td.failed{background:#ffd9d9!important;font-weight:600}
td.not-run{background:#fff7e0!important;font-style:italic}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eef0f2}
figcaption{font-size:.85rem;color:#52606d;margin-top:.3rem}
.tablenote{font-size:.82rem;color:#52606d;margin:.2rem 0 .6rem}
code{background:#f0f3f5;padding:0 .25rem;border-radius:3px;font-size:.9em}
details summary{cursor:pointer;color:#22577a;margin:.4rem 0}
footer{margin-top:3rem;font-size:.8rem;color:#6b7780}
"""
MARKED = {"supported", "contradicted", "inconclusive", "failed", "not run"}
WRAP_COLUMNS = {"data", "statement", "reason", "detail", "definition", "scope", "note", "choice", "value", "the paper",
                "this report"}


# ---------------------------------------------------------------- HTML

def inline(text: str) -> str:
    """Escape ``text`` and turn `code` spans into <code> elements."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def _numeric(value: str) -> bool:
    return bool(re.fullmatch(r"[-+]?\d[\d.,]*(e[-+]?\d+)?( \[.*\])?|–|", value))


def _column_class(column: str, values: list[str]) -> str:
    """``wrap`` for long text, ``text`` (left-aligned) unless every value is a number."""
    if column in WRAP_COLUMNS:
        return "wrap"
    return "" if all(_numeric(v) for v in values) else "text"


def _attr(*classes: str) -> str:
    names = " ".join(c for c in classes if c)
    return f' class="{names}"' if names else ""


def table_html(frame: pd.DataFrame) -> str:
    """A display frame as an HTML table (every cell escaped)."""
    if frame.empty:
        return "<p class=\"tablenote\">(no rows)</p>"
    columns = [str(c) for c in frame.columns]
    kinds = [_column_class(c, [str(v) for v in frame[c0]]) for c, c0 in zip(columns, frame.columns)]
    head = "".join(f"<th{_attr(k)}>{html.escape(c)}</th>" for c, k in zip(columns, kinds))
    body = []
    for row in frame.itertuples(index=False):
        cells = "".join(f"<td{_attr(k, str(v).replace(' ', '-') if str(v) in MARKED else '')}>{html.escape(str(v))}</td>"
                        for k, v in zip(kinds, row))
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="tablewrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def figure_html(figure: FigureFile) -> str:
    """The PNG embedded as a data URI, with its caption."""
    data = base64.b64encode(Path(figure.png).read_bytes()).decode("ascii")
    alt = html.escape(figure.caption, quote=True)
    return (f'<figure id="fig-{figure.name}"><img src="data:image/png;base64,{data}" alt="{alt}">'
            f"<figcaption>{inline(figure.caption)}</figcaption></figure>")


def _table_block(table: TableView) -> str:
    parts = [f"<h3>{inline(table.title)}</h3>"]
    if table.note:
        parts.append(f'<p class="tablenote">{inline(table.note)}</p>')
    body = table_html(table.frame)
    if table.collapsed:
        body = f"<details><summary>show {len(table.frame)} rows</summary>{body}</details>"
    parts.append(body)
    return "\n".join(parts)


def section_html(section: Section) -> str:
    """One <section>: heading, notes, text, bullets, figures, tables."""
    parts = [f'<section id="{section.key}"><h2>{inline(section.title)}</h2>']
    parts += [f'<p class="note">{inline(n)}</p>' for n in section.notes]
    parts += [f"<p>{inline(p)}</p>" for p in section.paragraphs]
    if section.bullets:
        parts.append("<ul>" + "".join(f"<li>{inline(b)}</li>" for b in section.bullets) + "</ul>")
    parts += [figure_html(f) for f in section.figures]
    parts += [_table_block(t) for t in section.tables]
    parts.append("</section>")
    return "\n".join(parts)


def render_html(page: Page, footer: str = "") -> str:
    """The whole page as one self-contained HTML document."""
    nav = " ".join(f'<a href="#{s.key}">{inline(s.title)}</a>' for s in page.sections)
    summary = "".join(f"<li>{inline(s)}</li>" for s in page.summary)
    sections = "\n".join(section_html(s) for s in page.sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(page.title)}</title>"
        f"<style>{CSS}</style></head>\n<body><main>\n<h1>{inline(page.title)}</h1>\n"
        f'<ul class="summary">{summary}</ul>\n<nav>{nav}</nav>\n{sections}\n'
        f"<footer>{inline(footer)}</footer>\n</main></body></html>\n"
    )


# ---------------------------------------------------------------- Markdown

def _section_markdown(section: Section, out_dir: Path) -> list[str]:
    lines = [f"## {section.title}", ""]
    lines += [line for n in section.notes for line in (f"> **Note:** {n}", "")]
    lines += [line for p in section.paragraphs for line in (p, "")]
    if section.bullets:
        lines += [f"- {b}" for b in section.bullets] + [""]
    for figure in section.figures:
        rel = Path(figure.png).relative_to(out_dir).as_posix()
        lines += [f"![{figure.caption}]({rel})", "", f"*{figure.caption}*", ""]
    for table in section.tables:
        lines += [f"### {table.title}", ""]
        if table.note:
            lines += [table.note, ""]
        if table.collapsed:
            lines += [f"<details><summary>show {len(table.frame)} rows</summary>", "", to_markdown(table.frame),
                      "</details>", ""]
        else:
            lines += [to_markdown(table.frame)]
    return lines


def render_markdown(page: Page, out_dir: Path, footer: str = "") -> str:
    """The same content as Markdown; figures linked relative to ``out_dir``."""
    lines = [f"# {page.title}", ""] + [f"- {s}" for s in page.summary] + [""]
    for section in page.sections:
        lines += _section_markdown(section, Path(out_dir))
    if footer:
        lines += ["---", "", footer, ""]
    return "\n".join(lines)

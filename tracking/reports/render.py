"""Rendering a report: one self-contained HTML file (PNG figures embedded as base64 ``data:`` URIs, no
external resources, readable offline), a Markdown file (figures as ``figures/<name>.png`` links) and the
tables as CSV."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .plots import Figure

__all__ = ["Section", "render_html", "render_markdown", "fmt_value"]


@dataclass
class Section:
    """A titled part of the report: paragraphs (plain text), tables ``(name, DataFrame)`` and figures.

    needs: what data the section shows, in words ("final-phase runs"); a section that needs data and has none
    (every table empty, no figure) is left out of the page and named under "What is missing"
    (``sections.report_sections``). compact: the first section's layout: the first table across the page, the
    other tables and the figures side by side below it (HTML), so that the whole answer fits one screen."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    anchor: str = ""
    needs: str = ""
    compact: bool = False


def fmt_value(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, (float, np.floating)):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        a = abs(float(v))
        if a != 0 and (a < 1e-3 or a >= 1e6):
            return f"{v:.3g}"
        return f"{v:.4g}" if a < 10 else f"{v:.2f}"
    return str(v)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:0.6em 0 1.2em;font-size:0.85em}
th,td{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}
th{background:#f0f0f0}
.v-supported{background:#d9f2d9}.v-not-supported{background:#fff3cd}.v-contradicted{background:#f8d7da}
.v-not-measured{background:#e9ecef}.v-inconclusive{background:#fff3cd}.v-equivalent{background:#dbe8f7}
.v-paper-s-effect-ruled-out{background:#f3e0c8}.v-not-measured-benchmark-differs{background:#e9ecef}
figure{margin:1em 0}figcaption{font-size:0.85em;color:#555}
img{max-width:100%}
.missing{border-left:4px solid #d9534f;padding:0.3em 1em;background:#fdf2f2}
.tablewrap{overflow-x:auto;max-width:100%}
.answer{border:1px solid #ccc;border-radius:4px;padding:0 1em 0.5em;margin-bottom:1em}
.answer p{margin:0.3em 0}.answer h2{margin:0.3em 0}.answer table{font-size:0.8em;margin:0.3em 0}
.answer th,.answer td{padding:2px 5px}.answer p small{color:#777}.answer td[class^="v-"]{white-space:nowrap}
.side td{white-space:nowrap}h1{font-size:1.7em;margin:0.3em 0}.answer>p{font-size:0.95em}
.side{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}.side>*{flex:1 1 420px;min-width:0}
.side figure{margin:0.4em 0}
nav ul{columns:3;font-size:0.9em}
"""


def _table_html(name: str, df: pd.DataFrame, csv: bool = True) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            text = html.escape(fmt_value(row[c]))
            cls = (f' class="v-{"".join(ch if ch.isalnum() else "-" for ch in text).strip("-").replace("--", "-")}"'
                   if c == "verdict" else "")
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        body.append(f'<tr><td colspan="{max(1, len(df.columns))}">(no rows)</td></tr>')
    return (f'<div class="tablewrap"><table data-name="{html.escape(name)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>"
            + (f"<p><small>CSV: {html.escape(name)}.csv</small></p>" if csv else ""))


def _figure_html(f: Figure) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    return (f'<figure id="fig-{html.escape(f.name)}"><img alt="{html.escape(f.title)}" '
            f'src="data:image/png;base64,{data}"><figcaption><b>{html.escape(f.title)}.</b> '
            f"{html.escape(f.caption)}</figcaption></figure>")


def _section_html(s: Section, csv: bool) -> str:
    cls = ' class="answer"' if s.compact else ""
    parts = [f'<section id="{s.anchor}"{cls}><h2>{html.escape(s.title)}</h2>']
    p_cls = ' class="missing"' if s.anchor == "missing" else ""
    parts += [f"<p{p_cls}>{html.escape(p)}</p>" for p in s.paragraphs]
    tables = [_table_html(name, df, csv) for name, df in s.tables]
    figures = [_figure_html(f) for f in s.figures]
    if s.compact and tables:
        parts.append(tables[0])
        side = tables[1:] + figures
        parts.append('<div class="side">' + "".join(f"<div>{x}</div>" for x in side) + "</div>" if side else "")
    else:
        parts += tables + figures
    parts.append("</section>")
    return "".join(parts)


def render_html(title: str, sections: list[Section], *, csv: bool = True) -> str:
    """The report as one self-contained HTML page; ``csv``: name each table's CSV file (only when written).
    The first section comes right after the title (the answer); the table of contents of the others follows
    it."""
    first, rest = sections[:1], sections[1:]
    toc = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in rest)
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts += [_section_html(s, csv) for s in first]
    if rest:
        parts.append(f'<nav><b>Contents</b><ul>{toc}</ul></nav>')
    parts += [_section_html(s, csv) for s in rest]
    parts.append("</body></html>\n")
    return "".join(parts)


def _md_cell(v) -> str:
    return fmt_value(v).replace("|", "\\|").replace("\n", " ")


def _table_md(df: pd.DataFrame) -> str:
    if df.empty:
        return "(no rows)\n"
    lines = ["| " + " | ".join(_md_cell(c) for c in df.columns) + " |",
             "|" + "|".join("---" for _ in df.columns) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_md_cell(row[c]) for c in df.columns) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(title: str, sections: list[Section], *, csv: bool = True) -> str:
    """The report as Markdown (figures linked as ``figures/<name>.png``); ``csv``: name each table's CSV."""
    out = [f"# {title}\n"]
    for s in sections:
        out.append(f"\n## {s.title}\n")
        for p in s.paragraphs:
            out.append(p + "\n")
        for name, df in s.tables:
            out.append(f"\n*{name}*" + (f" (`{name}.csv`)" if csv else "") + "\n\n" + _table_md(df))
        for f in s.figures:
            out.append(f"\n![{f.title}](figures/{f.name}.png)\n\n*{f.title}.* {f.caption}\n")
    return "\n".join(out)

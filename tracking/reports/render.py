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
    """A titled part of the report: paragraphs (plain text), tables ``(name, DataFrame)`` and figures."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    anchor: str = ""


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
.v-not-measured{background:#e9ecef}
figure{margin:1em 0}figcaption{font-size:0.85em;color:#555}
img{max-width:100%}
.missing{border-left:4px solid #d9534f;padding:0.3em 1em;background:#fdf2f2}
.tablewrap{overflow-x:auto}
"""


def _table_html(name: str, df: pd.DataFrame, csv: bool = True) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            text = html.escape(fmt_value(row[c]))
            cls = f' class="v-{text.replace(" ", "-")}"' if c == "verdict" else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        body.append(f'<tr><td colspan="{max(1, len(df.columns))}">(no rows)</td></tr>')
    return (f'<div class="tablewrap"><table data-name="{html.escape(name)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>"
            + (f"<p><small>CSV: {html.escape(name)}.csv</small></p>" if csv else ""))


def render_html(title: str, sections: list[Section], *, csv: bool = True) -> str:
    """The report as one self-contained HTML page; ``csv``: name each table's CSV file (only when written)."""
    toc = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections)
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1><ul>{toc}</ul>"]
    for s in sections:
        parts.append(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>')
        for p in s.paragraphs:
            cls = ' class="missing"' if s.anchor == "missing" else ""
            parts.append(f"<p{cls}>{html.escape(p)}</p>")
        for name, df in s.tables:
            parts.append(_table_html(name, df, csv))
        for f in s.figures:
            data = base64.b64encode(f.png).decode("ascii")
            parts.append(f'<figure id="fig-{html.escape(f.name)}"><img alt="{html.escape(f.title)}" '
                         f'src="data:image/png;base64,{data}"><figcaption><b>{html.escape(f.title)}.</b> '
                         f"{html.escape(f.caption)}</figcaption></figure>")
        parts.append("</section>")
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

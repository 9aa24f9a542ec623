"""A self-contained HTML report (plots inlined as base64 PNG) from a results dict."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from matryoshka.io import atomic_write_bytes

CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.4em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%}
.met{color:#17803d;font-weight:600}.unmet{color:#b42318;font-weight:600}code{background:#f3f3f3;padding:0 .2em}
"""


def table(rows: dict[str, dict[str, float]], dims: list[int], labels: dict[str, str], scale: float = 100) -> str:
    head = "".join(f"<th>{m}</th>" for m in dims)
    body = []
    for method, values in rows.items():
        cells = "".join(f"<td>{scale * values[str(m)]:.2f}</td>" if str(m) in values else "<td>-</td>" for m in dims)
        body.append(f"<tr><td>{html.escape(labels.get(method, method))}</td>{cells}</tr>")
    return f"<table><tr><th>method \\ dims</th>{head}</tr>{''.join(body)}</table>"


def image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def render(results: dict[str, Any], sections: list[tuple[str, str]]) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>matryoshka report: "
        f"{html.escape(results['dataset'])}</title><style>{CSS}</style></head><body>"
    ]
    parts.append(f"<h1>Matryoshka Representation Learning on {html.escape(results['dataset'])}</h1>")
    for title, body in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>{body}")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())

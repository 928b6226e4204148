"""report.md as one self-contained HTML page: the figures inlined as base64 data URIs, so
the page opens alike from the report folder, as an MLflow artifact or sent on its own.

Rendered with markdown-it-py (CommonMark plus GitHub tables, what `Table.markdown`
writes); raw HTML in the Markdown is escaped, not passed through.
"""

from __future__ import annotations

import base64
import html
import mimetypes
from pathlib import Path
from typing import Any

from mtdiff.data.io import atomic_write_text

HTML_FILE = "report.html"
_STYLE = """
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1.5em; color: #1f2328; }
h1 { font-size: 1.6em; border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; display: block;
        overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fbfcfd; }
code { background: #f6f8fa; padding: .1em .3em; border-radius: 4px; font-size: 90%; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; }
img { max-width: 100%; }
"""


def _inline(src: str, base: Path) -> str:
    """`src` as a data URI when it names an image file under `base`, else unchanged."""
    if "://" in src or src.startswith("data:"):
        return src
    path = base / src
    mime = mimetypes.guess_type(path.name)[0] or ""
    if not mime.startswith("image/") or not path.is_file():
        return src
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def render_html(markdown: str, base: str | Path, title: str = "MTDiff reproduction report"
                ) -> str:
    """The page for `markdown`, its relative image links (resolved against `base`)
    inlined."""
    from markdown_it import MarkdownIt  # not paid by every importer of mtdiff.report

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    default_image = md.renderer.rules["image"]
    folder = Path(base)

    def image(renderer: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
        tok = tokens[idx]
        tok.attrSet("src", _inline(str(tok.attrGet("src") or ""), folder))
        return default_image(tokens, idx, options, env)

    md.add_render_rule("image", image)
    body = md.render(markdown)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
            f"<body>\n{body}</body>\n</html>\n")


def write_html(report_md: str | Path) -> Path:
    """Render `report_md` into report.html beside it; returns its path."""
    src = Path(report_md)
    return atomic_write_text(src.parent / HTML_FILE,
                             render_html(src.read_text(), src.parent))

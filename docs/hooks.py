"""MkDocs hook: a fence opened as "```LANG notest: REASON" renders as a plain LANG block.

The info string marks a block that tests/test_docs.py does not run (GitHub shows its first word as the language);
Python-Markdown's fenced blocks accept only the language, so the rest is dropped before rendering.
"""

from __future__ import annotations

import re
from typing import Any

NOTEST = re.compile(r"^(`{3,}[\w+-]+)[ \t]+notest\b.*$", re.MULTILINE)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return NOTEST.sub(r"\1", markdown)

"""MkDocs hook: Sphinx cross-reference roles in docstrings shown as plain code.

The package's docstrings name other objects the Sphinx way (``:class:`~hf_metaid.EntityVocabulary```), which
mkdocstrings renders as the literal role followed by the code. This hook drops the role and, as Sphinx does for a
leading ``~``, the module path: ``EntityVocabulary``.
"""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj):<code>(~?)([^<]*)</code>")


def plain_code(html: str) -> str:
    """``html`` with every rendered Sphinx role replaced by its code alone."""

    def replace(match: re.Match) -> str:
        short, name = match.groups()
        return f"<code>{name.rsplit('.', 1)[-1] if short else name}</code>"

    return ROLE.sub(replace, html)


def on_page_content(html: str, page, config, files) -> str:
    return plain_code(html)

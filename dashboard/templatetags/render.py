"""Filters that show model output and tool results safely.

`markdown_safe` renders markdown and then sanitises the HTML (nh3 allow-list: no script,
no event handlers, no javascript: links); everything else is escaped by Django as usual.
"""

from __future__ import annotations

import json
from typing import Any

import markdown as md
import nh3
from django import template
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

ALLOWED_TAGS = {"p", "br", "strong", "em", "code", "pre", "ul", "ol", "li", "blockquote", "h1", "h2", "h3", "h4",
                "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "hr", "del"}


@register.filter
def markdown_safe(value: Any) -> SafeString:
    """Markdown to sanitised HTML (the only way model text reaches a page as markup)."""
    html = md.markdown(str(value or ""), extensions=["fenced_code", "tables"])
    clean = nh3.clean(html, tags=ALLOWED_TAGS, attributes={"a": {"href", "title"}}, url_schemes={"http", "https", "mailto"},
                      link_rel="noopener noreferrer nofollow")
    return mark_safe(clean)


@register.filter
def pretty_json(value: Any) -> str:
    """JSON for display inside <pre>; escaped by the template like any text."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)

"""Formatting for the runs pages: durations, token counts, money."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django import template
from django.utils import timezone

register = template.Library()
UNKNOWN = "\u2013"  # an en dash


@register.filter
def seconds(value: float | None) -> str:
    """`0.42 s`, `12.3 s`, `4 min 05 s`, `2 h 03 min`; a dash when unknown."""
    if value is None:
        return UNKNOWN
    if value < 60:
        return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def elapsed(start: datetime | None, end: datetime | None = None) -> str:
    """The time from `start` to `end` (to now when `end` is None), formatted like `seconds`."""
    if start is None:
        return UNKNOWN
    return seconds(max(0.0, ((end or timezone.now()) - start).total_seconds()))


@register.filter
def tokens(value: Any) -> str:
    """Thousands separated with a thin space: 12 345."""
    try:
        return f"{int(value):,}".replace(",", "\u202f")
    except (TypeError, ValueError):
        return UNKNOWN


@register.filter
def usd(value: Any) -> str:
    """Dollars with enough digits to show fractions of a cent."""
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        return UNKNOWN
    if amount == 0:
        return "$0"
    if amount < Decimal("0.01"):
        return f"${amount:.6f}".rstrip("0")
    return f"${amount:.4f}" if amount < 1 else f"${amount:,.2f}"


@register.filter
def iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


@register.filter
def is_text(value: Any) -> bool:
    return isinstance(value, str)

"""Whole numbers in text a client or a file sent: ids in paths, forms and query strings,
`Last-Event-ID`, `Content-Length`, cron fields, template indexes.

`str.isdigit()` is no guard for `int()`: it is True for "²" and "①", which `int()` refuses
(a 500 where the caller meant "not a number"), and `int()` takes any length (up to its
4,300-digit limit, then it raises too). Only ASCII digits, at most 18 of them (a 64-bit
database id), count here.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[0-9]{1,18}")


def is_whole(text: str | None) -> bool:
    return bool(text) and _DIGITS.fullmatch(text) is not None


def whole(text: str | None) -> int | None:
    """`text` as a whole number, or None when it is not one."""
    return int(text) if is_whole(text) else None

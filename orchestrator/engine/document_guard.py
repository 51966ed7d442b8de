"""Bounds on documents from outside, checked before anything recursive touches them.

Python's `json`, PyYAML's composer, pydantic and the template renderer all recurse, so a
document nested 10,000 levels deep (`[[[[...`) would end in a `RecursionError` — a 500.
These checks walk text and data iteratively and name the path of the first offence:

- nesting: at most `max_depth` levels of objects and lists (`MAX_DOCUMENT_DEPTH` for specs);
- NUL characters (`\\x00`): PostgreSQL refuses them in text, so no backend stores them;
- YAML aliases (`*name`): a few lines of anchors expand to gigabytes ("billion laughs").

`load_text` parses JSON or YAML text with these bounds; `scan_json_text` measures raw JSON
(the HTTP middleware uses it on request bodies); `scan_data` checks parsed data.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Literal

import yaml

from mcpgateway.documents import DuplicateKey, load_yaml_unique, loads_json_unique, unique_pairs

# Objects and lists, counted together: `{"steps": [{...}]}` is three levels. Steps and
# conditions each nest at most 32 deep (spec.MAX_NESTING); this leaves room for both.
MAX_DOCUMENT_DEPTH = 160

_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],:]', re.DOTALL)
_NUL_ESCAPE = "\\u0000"  # JSON escapes spell `u` in lower case


@dataclass(frozen=True, slots=True)
class Problem:
    """Where a document breaks a bound, and what a user should be told."""

    path: str
    message: str


def join_path(parts: list[Any]) -> str:
    return ".".join(str(p) for p in parts)


def too_deep(limit: int) -> str:
    return f"nested deeper than {limit} levels of objects and lists"


NUL_MESSAGE = "contains a NUL character (\\u0000), which cannot be stored"


def _has_nul(token: str) -> bool:
    if "\x00" in token:
        return True
    if _NUL_ESCAPE not in token:
        return False
    try:
        return "\x00" in json.loads(token)
    except ValueError:
        return True


def _key(token: Any) -> Any:
    """A path part: list indexes as they are, object keys decoded from their JSON token."""
    if not isinstance(token, str):
        return token
    try:
        return json.loads(token)
    except ValueError:
        return token[1:-1]


def _frames_path(frames: list[list[Any]]) -> str:
    return join_path([_key(f[1]) for f in frames])


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _max_depth(text: str) -> int:
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if len(brackets) <= 1:
        return len(brackets)
    steps = brackets.translate(_DEPTH_STEPS)
    return max(accumulate(1 if c == "+" else -1 for c in steps))


_DEPTH_STEPS = str.maketrans({"{": "+", "[": "+", "}": "-", "]": "-"})


def scan_json_text(text: str, max_depth: int = MAX_DOCUMENT_DEPTH) -> Problem | None:
    """The first nesting or NUL offence in JSON text, found without parsing it recursively.

    Tolerant: text that is not JSON is measured as far as its brackets and strings go (the
    real parser reports the syntax error afterwards).
    """
    if _NUL_ESCAPE not in text and "\x00" not in text and _max_depth(text) <= max_depth:
        return None  # the common case, measured at C speed; paths are worked out only for offenders
    # Each frame: [is_object, key token or index, expecting_key]
    frames: list[list[Any]] = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            top = frames[-1] if frames else None
            is_key = top is not None and top[0] and top[2]
            if is_key:
                top[1] = token
            if _has_nul(token):
                return Problem(_frames_path(frames), NUL_MESSAGE)
        elif token in "{[":
            if frames and frames[-1][0]:
                frames[-1][2] = False
            frames.append([token == "{", None if token == "{" else 0, True])
            if len(frames) > max_depth:
                return Problem(_frames_path(frames[:-1]), too_deep(max_depth))
        elif token in "}]":
            if frames:
                frames.pop()
        elif token == ",":
            if frames:
                top = frames[-1]
                if top[0]:
                    top[2] = True
                else:
                    top[1] += 1
        elif token == ":" and frames and frames[-1][0]:
            frames[-1][2] = False
    return None


def scan_yaml_text(text: str, max_depth: int = MAX_DOCUMENT_DEPTH) -> Problem | None:
    """The first nesting, alias or NUL offence in YAML text, from the parser's event stream.

    PyYAML's scanner and parser are iterative; only the composer recurses, so this runs
    before `yaml.safe_load`. Syntax errors are left for `safe_load` to report.
    """
    # Each frame: [is_mapping, key or index, expecting_key]
    frames: list[list[Any]] = []

    def value_done() -> None:
        if not frames:
            return
        top = frames[-1]
        if top[0]:
            top[2] = not top[2]
        else:
            top[1] += 1

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.ScalarEvent):
                top = frames[-1] if frames else None
                if "\x00" in event.value:
                    return Problem(join_path([f[1] for f in frames]), NUL_MESSAGE)
                if top is not None and top[0] and top[2]:
                    top[1] = event.value
                value_done()
            elif isinstance(event, yaml.AliasEvent):
                return Problem(join_path([f[1] for f in frames]), "YAML aliases (*name) are not allowed in a spec")
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if frames and frames[-1][0] and frames[-1][2]:
                    return Problem(join_path([f[1] for f in frames]), "a mapping key must be a plain value")
                frames.append([isinstance(event, yaml.MappingStartEvent), 0, True])
                if frames[-1][0]:
                    frames[-1][1] = None
                if len(frames) > max_depth:
                    return Problem(join_path([f[1] for f in frames[:-1]]), too_deep(max_depth))
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frames.pop()
                value_done()
    except yaml.YAMLError:
        return None
    return None


def scan_data(data: Any, max_depth: int = MAX_DOCUMENT_DEPTH) -> Problem | None:
    """The first nesting, NUL or non-finite number offence in parsed data, walked iteratively."""
    stack: list[tuple[Any, list[Any], int]] = [(data, [], 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return Problem(join_path(path), NUL_MESSAGE)
            continue
        if isinstance(value, float) and not math.isfinite(value):
            # Python's JSON and YAML readers take NaN, Infinity, 1e999 and .inf; no database
            # stores them as JSON (a 500 on save, or a version that would not load).
            return Problem(join_path(path), "a number must be finite (NaN and Infinity are not JSON)")
        if not isinstance(value, (dict, list)):
            continue
        if depth > max_depth:
            return Problem(join_path(path), too_deep(max_depth))
        items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        for key, child in reversed(items):
            if isinstance(key, str) and "\x00" in key:
                return Problem(join_path([*path, key.replace("\x00", "\\u0000")]), NUL_MESSAGE)
            stack.append((child, [*path, key], depth + 1))
    return None


def deeper_than(data: Any, limit: int) -> bool:
    """Whether `data` nests more than `limit` levels of objects and lists (iteratively)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return False


class DocumentError(ValueError):
    """Text that breaks a bound (`syntax` False) or does not parse (`syntax` True); `problem.path` names where."""

    def __init__(self, problem: Problem, syntax: bool = False):
        super().__init__(f"{problem.path or '<root>'}: {problem.message}")
        self.problem = problem
        self.syntax = syntax


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads_finite(text: str | bytes) -> Any:
    """`json.loads` without NaN, Infinity or numbers too large for a float (`1e400`), which
    Python's reader accepts and no database stores as JSON: ValueError (a JSONDecodeError for
    text that does not parse) instead of a value that fails its row's insert later."""
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)


def load_typed_json(text: str, max_depth: int = MAX_DOCUMENT_DEPTH) -> Any:
    """JSON a person typed (an edited output on the review or fork form): within the depth
    bound, no key repeated in an object, no NaN, Infinity or 1e400. DocumentError says what is
    wrong. (`loads_finite` alone let a repeated key keep its last value silently, and a deep
    enough text raised RecursionError: a 500.)"""
    problem = scan_json_text(text, max_depth)
    if problem is not None:
        raise DocumentError(problem)
    try:
        return json.loads(text, object_pairs_hook=unique_pairs, parse_constant=_no_constant, parse_float=_finite_float)
    except DuplicateKey as exc:
        raise DocumentError(Problem("", str(exc)), syntax=True) from None
    except json.JSONDecodeError as exc:
        raise DocumentError(Problem("", f"{exc.msg} (line {exc.lineno})"), syntax=True) from None
    except ValueError as exc:  # NaN, Infinity, 1e400
        raise DocumentError(Problem("", str(exc)), syntax=True) from None


def finite_json(value: Any) -> Any:
    """`value` with NaN and infinities written as the strings "NaN", "Infinity", "-Infinity"
    (for a record of what was received, such as an event: JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def load_text(text: str, form: Literal["json", "yaml", "auto"] = "auto", max_depth: int = MAX_DOCUMENT_DEPTH) -> Any:
    """Parse JSON or YAML text within the bounds (`auto`: JSON if it parses, else YAML).

    Raises DocumentError with the path of a bound broken, or a syntax message at the root —
    a key repeated in one object or mapping too (both readers kept its last value, silently).
    """
    # JSON text is measured by its brackets; anything else (YAML, whose flow style is a
    # superset of JSON) by the YAML parser's events, which also name YAML keys in the path.
    looks_json = form == "json" or (form == "auto" and text.lstrip()[:1] in ("{", "["))
    problem = scan_json_text(text, max_depth) if looks_json else None
    if problem is not None:
        raise DocumentError(problem)
    if form in ("json", "auto"):
        try:
            return loads_json_unique(text)
        except DuplicateKey as exc:
            raise DocumentError(Problem("", str(exc)), syntax=True) from None
        except ValueError as exc:
            if form == "json":
                raise DocumentError(Problem("", f"JSON does not parse: {exc}"), syntax=True) from None
    problem = scan_yaml_text(text, max_depth)
    if problem is not None:
        raise DocumentError(problem)
    try:
        return load_yaml_unique(text)
    except DuplicateKey as exc:
        raise DocumentError(Problem("", str(exc)), syntax=True) from None
    except yaml.YAMLError as exc:
        message = f"YAML does not parse: {exc}" if form == "yaml" else f"neither valid JSON nor YAML: {exc}"
        raise DocumentError(Problem("", message), syntax=True) from None

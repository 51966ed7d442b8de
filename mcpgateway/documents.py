"""Reading JSON and YAML documents without losing anything silently: a key given twice in one
object or mapping is refused (every reader here kept the last value), and YAML dates and
times stay text (they are no JSON value). The lowest layer, so the gateway's config import,
the orchestrator's specs and eval suites, and the request guard share it."""

from __future__ import annotations

import json
from typing import Any

import yaml


class DuplicateKey(Exception):
    """A key given twice. Not a ValueError: a caller trying JSON and then YAML must not read
    it as "not JSON"."""

    def __init__(self, key: Any, line: int | None = None):
        where = f" (line {line})" if line is not None else ""
        super().__init__(f"the key {key!r} appears twice in one object{where}: the first value would be lost")
        self.key = key


def unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads`'s `object_pairs_hook` refusing a repeated key."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(key)
        found[key] = value
    return found


def loads_json_unique(text: str | bytes) -> Any:
    return json.loads(text, object_pairs_hook=unique_pairs)


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key and any alias, and reading
    dates and times as text (`2024-01-31`): a date object failed whatever stored or compared it."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):  # a few lines of nested aliases expand to gigabytes
            raise yaml.YAMLError(f"YAML aliases are not accepted (line {self.peek_event().start_mark.line + 1})")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class says so
                break
            if repeated:
                raise DuplicateKey(key, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep)


def load_yaml_unique(text: str) -> Any:
    return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects

"""YAML as daguerre's files need it: YAML 1.2 numbers and no duplicate keys.

PyYAML implements YAML 1.1, which reads ``1e-4`` (no dot) as a string, so ``lr: 1e-4`` in a
training config or ``sigma: 1e-2`` in a recipe was not a number; and a key given twice kept
the last value without a word.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from .filekind import NotRegularFile, read_regular


MAX_VALUES = 100_000
"""Values a document may hold once its aliases are expanded: a 400-byte YAML of nested aliases holds 10^9."""


MAX_BYTES = 16 * 2**20
"""Bytes a recipe or settings file may hold: /dev/zero, or a device or stream given by mistake, was read until memory ran out."""


class Loader(yaml.SafeLoader):
    """A SafeLoader with YAML 1.2 floats that refuses duplicate keys and alias bombs."""

    def compose_node(self, parent, index):
        node = super().compose_node(parent, index)
        if not hasattr(node, "expanded"):  # an alias gives its anchor's node, counted already
            kids = [v for _, v in node.value] if isinstance(node, yaml.MappingNode) else node.value if isinstance(node, yaml.SequenceNode) else []
            node.expanded = 1 + sum(getattr(k, "expanded", 1) for k in kids)  # an alias of an ancestor (a loop): 1
            if node.expanded > MAX_VALUES:  # the values of every key (dicts, lists and scalars), as recipes count them
                raise yaml.composer.ComposerError(None, None, f"a document holds at most {MAX_VALUES:,} values (YAML aliases "
                                                  f"multiply them)", node.start_mark)  # fmt: skip
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):  # the keys written here; merged ones (<<: *a) may be overridden
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # a list or mapping as a key: PyYAML's own error, below
                    break
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


Loader.yaml_implicit_resolvers = {
    first: [r for r in rs if r[0] != "tag:yaml.org,2002:float"] for first, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_FLOAT = re.compile(
    r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


class Dumper(yaml.SafeDumper):
    """A SafeDumper whose text :class:`Loader` reads back as written.

    PyYAML's dumper judges by YAML 1.1, so it left a string such as ``1e5`` unquoted, which the
    loader's YAML 1.2 floats read as a number; and it put a NEL (``\\x85``) inside single quotes,
    where reading folds it into a space."""


Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = '"' if "\x85" in data else None  # double quotes escape it (\\N)
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


Dumper.add_representer(str, _represent_str)


def error_parts(e: yaml.YAMLError) -> tuple[int | None, str]:
    """(line number or None, one-line problem) of a YAML error, for a one-line message."""
    mark = getattr(e, "problem_mark", None)
    return (mark.line + 1 if mark is not None else None), getattr(e, "problem", None) or str(e).splitlines()[0]


def read_text(path: str | os.PathLike) -> str:
    """A recipe or settings file's text (UTF-8, a byte-order mark dropped, universal newlines), refused over MAX_BYTES
    or when not a regular file with a ValueError (UnicodeDecodeError is one too)."""
    try:  # a FIFO waited for a writer for ever; a missing file, a broken link: their OSError
        data = read_regular(path, MAX_BYTES + 1)
    except NotRegularFile as e:
        raise ValueError(e.strerror) from None
    if len(data) > MAX_BYTES:
        raise ValueError(f"over {MAX_BYTES // 2**20} MiB, too large for a recipe or settings file")
    return data.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")


def load_yaml(text: str) -> Any:
    """Parse ``text``; errors are ``yaml.YAMLError`` (with a ``problem_mark``), as PyYAML's own."""
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass

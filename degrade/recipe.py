"""Recipes: combinator trees of operators, validated on load, canonical, hashed and replayable.

A recipe file is YAML or JSON::

    name: my-recipe
    description: what it models
    steps:                      # an implicit sequence
      - op: gaussian_blur       # an operator and its settings (value or [low, high] range)
        sigma: [0.5, 2.0]
        p: 0.5                  # optional: apply with this probability
      - one_of: [...]           # or OneOf; optional weights: [...]
      - some_of: [...]          # or SomeOf; k: 2 or k: [1, 3]; shuffle: false (keep list order)
      - maybe: {op: jpeg}       # or Maybe; p: 0.3
      - random_order: [...]     # or RandomOrder
      - sequence: [...]         # or Sequence

Sampling draws from the sample's generator in tree order; ``apply`` returns the degraded
image, the defect mask and the record of every operator applied, which ``replay`` re-applies.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import RecipeError
from .filekind import BROKEN_LINK, FOLDER, MISSING, what_is
from .image import check_image
from .operator import Operator, get_operator
from .params import Float, Int, check_plain_number
from .rand import check_generator, sample_rng
from .yamltext import MAX_VALUES, Dumper, error_parts, load_yaml, read_text

SCHEMA = 1
COMBINATORS = {
    "sequence": "sequence",
    "Sequence": "sequence",
    "one_of": "one_of",
    "OneOf": "one_of",
    "some_of": "some_of",
    "SomeOf": "some_of",
    "maybe": "maybe",
    "Maybe": "maybe",
    "random_order": "random_order",
    "RandomOrder": "random_order",
}
_PROB = Float(0.0, 1.0, default=1.0)
_K = Int(0, 10_000, default=1)

Record = list[dict[str, Any]]


class Node:
    """A recipe tree node; ``p`` < 1 makes it optional (one uniform draw)."""

    p: float = 1.0

    def walk(self, rng: np.random.Generator, out: Record) -> None:
        if self.p < 1.0 and rng.random() >= self.p:
            return
        self._walk(rng, out)

    def _walk(self, rng: np.random.Generator, out: Record) -> None:
        raise NotImplementedError

    def canonical(self) -> dict[str, Any]:
        body = self._canonical()
        if self.p != 1.0:
            body["p"] = self.p
        return body

    def _canonical(self) -> dict[str, Any]:
        raise NotImplementedError

    def ops(self) -> list[tuple[str, Operator]]:
        raise NotImplementedError


@dataclass
class OpNode(Node):
    path: str
    op: Operator
    p: float = 1.0

    def _walk(self, rng, out):
        out.append({"path": self.path, "op": self.op.name, "version": self.op.version, "params": self.op.sample(rng)})

    def _canonical(self):
        return self.op.config()

    def ops(self):
        return [(self.path, self.op)]


@dataclass
class Group(Node):
    kind: str
    children: list[Node]
    p: float = 1.0
    weights: list[float] | None = None
    k: int | list[int] = 1
    shuffle: bool = False

    def __post_init__(self) -> None:
        if self.weights is not None:
            self._cum = list(np.cumsum(self.weights))

    def _walk(self, rng, out):
        kids = self.children
        if self.kind in ("sequence", "maybe"):
            order = range(len(kids))
        elif self.kind == "random_order":
            order = rng.permutation(len(kids))
        elif self.kind == "one_of":
            u = rng.random()
            if self.weights is None:
                order = [min(int(u * len(kids)), len(kids) - 1)]
            else:
                order = [min(bisect.bisect_right(self._cum, u * self._cum[-1]), len(kids) - 1)]
        else:  # some_of
            k = _K.sample(self.k, rng)
            picked = rng.choice(len(kids), size=min(k, len(kids)), replace=False)
            order = picked if self.shuffle else np.sort(picked)
        for i in order:
            kids[int(i)].walk(rng, out)

    def _canonical(self):
        if self.kind == "maybe":  # p always, even 1: a maybe without one does not parse
            return {"maybe": self.children[0].canonical(), "p": self.p}
        body: dict[str, Any] = {self.kind: [c.canonical() for c in self.children]}
        if self.weights is not None:
            body["weights"] = self.weights
        if self.kind == "some_of":
            body["k"] = self.k
            if self.shuffle:
                body["shuffle"] = True
        return body

    def ops(self):
        return [x for c in self.children for x in c.ops()]


def _probability(value: Any, path: str) -> float:
    v = _PROB.normalize(value, path)
    if isinstance(v, list):
        raise RecipeError(f"{path}: expected one probability, got a range")
    return v


def parse_node(obj: Any, path: str) -> Node:
    """Build one node from its YAML/JSON form; every error names ``path``."""
    if not isinstance(obj, dict):
        raise RecipeError(f"{path}: expected a mapping with 'op' or a combinator, got {type(obj).__name__} {obj!r}")
    keys = [k for k in obj if k == "op" or k in COMBINATORS]
    if len(keys) != 1:
        what = "no" if not keys else f"several ({', '.join(keys)})"
        raise RecipeError(
            f"{path}: {what} node type; use one of op, sequence, one_of, some_of, maybe, random_order"
        )
    key = keys[0]
    rest = {k: v for k, v in obj.items() if k != key}
    p = _probability(rest.pop("p", 1.0), f"{path}.p")
    if key == "op":
        name = obj["op"]
        cls = get_operator(name, f"{path}.op")
        version = rest.pop("version", None)
        if "version" in obj and type(version) is not int:
            raise RecipeError(f"{path}.version: expected an integer, got {version!r}")
        clash = sorted(set(rest) & {"self", "_path", "_version"})  # the constructor's own arguments: a TypeError
        if clash:
            raise RecipeError(f"{path}: unknown parameter {clash[0]!r} for {name}")
        return OpNode(path, cls(_path=path, _version=version, **rest), p)
    kind = COMBINATORS[key]
    if kind == "maybe":
        if "p" not in obj:
            raise RecipeError(f"{path}: maybe needs a probability p")
        if rest:
            raise RecipeError(f"{path}: unknown key {sorted(rest)[0]!r} for maybe (known: p)")
        return Group("maybe", [parse_node(obj[key], f"{path}.maybe")], p)
    items = obj[key]
    if not isinstance(items, list) or not items:
        raise RecipeError(f"{path}.{kind}: expected a non-empty list of steps")
    children = [parse_node(c, f"{path}.{kind}[{i}]") for i, c in enumerate(items)]
    allowed = {"one_of": {"weights"}, "some_of": {"k", "shuffle"}}.get(kind, set())
    extra = sorted(set(rest) - allowed)
    if extra:
        known = ", ".join(sorted(allowed | {"p"}))
        raise RecipeError(f"{path}: unknown key {extra[0]!r} for {kind} (known: {known})")
    weights = None
    if "weights" in rest:
        w = rest["weights"]
        if not isinstance(w, list) or len(w) != len(children):
            raise RecipeError(f"{path}.weights: expected {len(children)} weights, one per choice")
        w = [Float(0.0, 1e9, default=1.0).normalize(x, f"{path}.weights[{i}]") for i, x in enumerate(w)]
        if any(isinstance(x, list) for x in w) or sum(w) <= 0:
            raise RecipeError(f"{path}.weights: expected non-negative numbers with a positive sum")
        total = sum(w)
        # normalised and rounded so that canonicalising twice is the identity: weights that already sum to 1
        # (a canonical form) are not divided again, and equality is judged after rounding. Whether they sum
        # to 1 is judged after rounding too: [0.9999999987777777, 2.2222222172839506e-09] summed to 1 within
        # 1e-9 before it and not after, so the canonical form was divided again on reload (another hash)
        rounded = [round(x, 12) for x in w]
        w = rounded if abs(sum(rounded) - 1) <= 1e-9 else [round(x / total, 12) for x in w]
        weights = None if len(set(w)) == 1 else w
    k: int | list[int] = 1
    if kind == "some_of":
        if "k" not in rest:
            raise RecipeError(f"{path}: some_of needs k (a count or a [low, high] range)")
        k = Int(0, len(children), default=1).normalize(rest["k"], f"{path}.k")
    shuffle = rest.get("shuffle", False)
    if not isinstance(shuffle, bool):
        raise RecipeError(f"{path}.shuffle: expected true or false, got {shuffle!r}")
    return Group(kind, children, p, weights, k, shuffle)


@dataclass
class Degraded:
    """What applying a recipe to one image gives: degraded image, defect mask, applied-ops record."""

    image: np.ndarray
    mask: np.ndarray
    params: Record


def canonical_sha256(obj: Any) -> str:
    """SHA-256 of ``obj`` as compact, key-sorted JSON: how recipes and dataset lineages are hashed."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def recipe_hash(canonical: dict[str, Any]) -> str:
    """The hash of a canonical recipe: its schema and steps (name and description excluded). What a
    dataset records as ``recipe_hash``, computed here from the recorded form without re-parsing it."""
    return canonical_sha256({"schema": canonical["schema"], "steps": canonical["steps"]})


class Recipe:
    """A validated recipe: sample records, apply them, serialise canonically, hash."""

    def __init__(self, steps: list[Node], name: str = "", description: str = "") -> None:
        self.root = Group("sequence", steps)
        self.name = name
        self.description = description

    @classmethod
    def from_dict(cls, obj: Any, name: str = "") -> Recipe:
        _check_plain(obj, "recipe")
        if isinstance(obj, list):
            obj = {"steps": obj}
        if not isinstance(obj, dict):
            raise RecipeError(f"recipe: expected a mapping with 'steps' or a list of steps, got {type(obj).__name__}")
        extra = sorted(set(obj) - {"name", "description", "steps", "schema", "recipe_hash"})
        if extra:
            raise RecipeError(f"recipe: unknown key {extra[0]!r} (known: name, description, steps, schema, recipe_hash)")
        for key in ("name", "description"):
            if obj.get(key) is not None and not isinstance(obj[key], str):
                raise RecipeError(f"recipe.{key}: expected text, got {obj[key]!r}")
        if obj.get("schema", SCHEMA) != SCHEMA or isinstance(obj.get("schema"), bool):  # true == 1 in Python
            raise RecipeError(f"recipe.schema: {obj['schema']!r} is not supported (this version reads {SCHEMA})")
        steps = obj.get("steps")
        if not isinstance(steps, list) or not steps:
            raise RecipeError("steps: expected a non-empty list of steps")
        nodes = [parse_node(s, f"steps[{i}]") for i, s in enumerate(steps)]
        recipe = cls(nodes, str(obj.get("name") or name), str(obj.get("description") or "").strip())
        if "recipe_hash" in obj and obj["recipe_hash"] != recipe.hash:  # `recipes show --json` writes it: a check
            raise RecipeError(f"recipe.recipe_hash: the file says {str(obj['recipe_hash'])[:16]}… but its steps hash to "
                              f"{recipe.hash[:16]}… (edited since it was written? remove its recipe_hash key)")  # fmt: skip
        return recipe

    # -- serialisation ---------------------------------------------------------------------
    def canonical(self) -> dict[str, Any]:
        """The full normalised recipe: every parameter explicit, operator versions pinned."""
        return {"schema": SCHEMA, "name": self.name, "description": self.description, "steps": [c.canonical() for c in self.root.children]}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.canonical(), indent=indent, sort_keys=indent is None, ensure_ascii=False)

    def to_yaml(self) -> str:
        return yaml.dump(self.canonical(), Dumper=_FlowListDumper, sort_keys=False, allow_unicode=True, width=100)

    @property
    def hash(self) -> str:
        """SHA-256 of the canonical steps (name and description excluded): same hash, same samples."""
        return recipe_hash(self.canonical())

    def operators(self) -> list[tuple[str, Operator]]:
        """(path, configured operator) for every op node, in tree order."""
        return self.root.ops()

    # -- sampling and applying -------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Record:
        """Draw the record of one sample: which ops run, in which order, with which params."""
        check_generator(rng)
        out: Record = []
        self.root.walk(rng, out)
        return out

    def sample_params(self, seed: int, index: int) -> Record:
        """The record of sample ``index`` under ``seed`` (the reproducibility contract)."""
        return self.sample(sample_rng(seed, index))

    def apply(self, image: np.ndarray, seed: int, index: int = 0) -> Degraded:
        """Degrade ``image`` as sample ``index`` of ``seed``."""
        record = self.sample_params(seed, index)
        out, mask = replay(image, record, validate=False)
        return Degraded(out, mask, record)

    def __eq__(self, other: object) -> bool:
        """Equal when the canonical forms are (name and description included); ``.hash`` compares samples only."""
        return isinstance(other, Recipe) and self.canonical() == other.canonical()

    def __hash__(self) -> int:
        return hash((self.hash, self.name, self.description))

    def __repr__(self) -> str:
        return f"Recipe({self.name or 'unnamed'!r}, {len(self.operators())} ops, hash={self.hash[:12]})"


def _check_plain(obj: Any, path: str, active: tuple[int, ...] = (), seen: list[int] | None = None) -> None:
    """Recipes are plain JSON: string keys, finite numbers, no loops (YAML aliases can make one)."""
    seen = [0] if seen is None else seen
    seen[0] += 1
    if seen[0] > MAX_VALUES:
        raise RecipeError(f"{path}: a recipe holds at most {MAX_VALUES:,} values (YAML aliases multiply them)")
    check_plain_number(obj, path)
    if isinstance(obj, (dict, list)):
        if id(obj) in active:
            raise RecipeError(f"{path}: refers to itself (a YAML alias loop)")
        if len(active) > 64:
            raise RecipeError(f"{path}: nested more than 64 levels deep")
        inner = (*active, id(obj))
        if isinstance(obj, dict):
            for k, v in obj.items():
                if not isinstance(k, str):
                    raise RecipeError(f"{path}: keys must be strings, got {k!r}")
                _check_plain(v, f"{path}.{k}", inner, seen)
        else:
            for i, v in enumerate(obj):
                _check_plain(v, f"{path}[{i}]", inner, seen)


def replay(image: np.ndarray, record: Record | dict[str, Any], validate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Re-apply a params record: same image and record give the same bytes. Returns (image, mask).

    ``record`` is the list of applied operators (``Degraded.params``), or a whole JSON file that holds
    it under ``params``: a ``NAME-KKK.json`` of ``daguerre degrade``, an ``NNNNNN.json`` of ``dataset export``.
    """
    check_image(image)
    if isinstance(record, dict) and isinstance(record.get("params"), list):
        record = record["params"]
    if not isinstance(record, list):
        raise RecipeError("params record: expected a list of applied operators")
    if validate:  # a hand-made record, as a recipe: text keys, integers short enough to name (10**5000 was a ValueError)
        _check_plain(record, "record")
    mask = None
    out = image
    for i, entry in enumerate(record):
        where = f"record[{i}]"
        if not isinstance(entry, dict) or not {"op", "params"} <= set(entry):
            raise RecipeError(f"{where}: expected a mapping with 'op' and 'params'")
        cls = get_operator(entry["op"], where)
        if "version" not in entry:  # every record daguerre writes names it; without it a changed operator would pass
            raise RecipeError(f"{where}: no operator version (records name the version they were made with)")
        version = entry["version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise RecipeError(f"{where}.version: expected an integer, got {version!r}")
        cls.check_version(version, where)
        params = cls.check_params(entry["params"], f"{where}.params") if validate else entry["params"]
        out, mask = _instance(cls, version).apply_to(out, mask, params)
    if mask is None:
        mask = np.zeros(image.shape[:2], np.uint8)
    return (out if out is not image else image.copy()), mask


_INSTANCES: dict[tuple[type[Operator], int], Operator] = {}


def _instance(cls: type[Operator], version: int) -> Operator:
    """A default instance for replay: ``apply`` depends only on params (and the version), not on configured ranges."""
    op = _INSTANCES.get((cls, version))
    if op is None:
        op = cls.__new__(cls)
        op.version = version  # before it is published: another thread may replay with it at once
        _INSTANCES[cls, version] = op
    return op


class _FlowListDumper(Dumper):
    """Safe YAML (that reads back as written) with short scalar lists ([low, high] ranges, choices) kept on one line."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(x, (list, dict)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_FlowListDumper.add_representer(list, _represent_list)


# -- loading -------------------------------------------------------------------------------
def builtin_recipes() -> list[str]:
    """Names of the recipes shipped with daguerre."""
    return sorted(p.name[:-5] for p in resources.files("degrade.recipes").iterdir() if p.name.endswith(".yaml"))


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise RecipeError(f"duplicate key {dup!r}")
    return out


def parse_text(text: str, source: str) -> Any:
    """A recipe file's data: ``.json`` files as JSON (every JSON number, tab indents), others as YAML."""
    try:
        if str(source).lower().endswith(".json"):
            return json.loads(text, object_pairs_hook=_json_pairs)
        return load_yaml(text)
    except RecursionError:
        raise RecipeError(f"{source}: nested more than 64 levels deep") from None
    except RecipeError as e:  # a duplicate key in JSON
        raise RecipeError(f"{source}: {e}") from None
    except json.JSONDecodeError as e:
        raise RecipeError(f"{source}: line {e.lineno} is not valid JSON: {e.msg}") from None
    except yaml.YAMLError as e:
        line, problem = error_parts(e)
        raise RecipeError(f"{source}:{f' line {line}' if line else ''} is not valid YAML/JSON: {problem}") from None
    except ValueError as e:  # an integer literal of more than 4,300 digits, which Python refuses to convert
        raise RecipeError(f"{source}: {str(e).split(';')[0]}") from None


def load_recipe(ref: str | Path | dict | list | Recipe) -> Recipe:
    """A recipe from a built-in name, a .yaml/.yml/.json path, or an already parsed mapping."""
    if isinstance(ref, Recipe):
        return ref
    if isinstance(ref, (dict, list)):
        return Recipe.from_dict(ref)
    ref = str(ref)
    if not ref.strip():
        raise RecipeError("recipe: empty name (give a built-in name or a .yaml/.json file)")
    if ref in builtin_recipes():
        text = resources.files("degrade.recipes").joinpath(f"{ref}.yaml").read_text()
        return Recipe.from_dict(parse_text(text, ref), name=ref)
    path = Path(ref)
    try:
        kind = what_is(path)
    except OSError as e:  # a folder on the way that may not be searched
        raise RecipeError(f"cannot read recipe {ref}: {e}") from None
    if kind == BROKEN_LINK:  # its file moved away, or links that loop
        raise RecipeError(f"recipe {ref!r} is a broken symbolic link")
    if kind == MISSING:
        raise RecipeError(f"unknown recipe {ref!r}: not a built-in ({', '.join(builtin_recipes())}) nor a file")
    if kind == FOLDER:
        raise RecipeError(f"recipe {ref!r} is a directory, expected a .yaml or .json file")
    try:
        text = read_text(path)  # a byte-order mark is not JSON, nor part of the recipe
    except (OSError, ValueError) as e:
        raise RecipeError(f"cannot read recipe {ref}: {e}") from None
    return Recipe.from_dict(parse_text(text, ref), name=path.stem)

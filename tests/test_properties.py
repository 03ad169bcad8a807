"""Property tests across modules: random recipes (valid and not), operators at their extremes, the dataset reader."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipelines import build_spec, create_dataset, open_dataset
from test_recipes import _STEPS


# -- the dataset reader: ds[i], read, read_range and read_many agree, on both of its paths -----------------
def _zarr_python_copy(ds, dest):
    """The same samples written by zarr-python (unsharded chunks): a store the reader reads through zarr-python."""
    import zarr

    g = zarr.open_group(str(dest), mode="w", zarr_format=3)
    g.attrs.update(json.loads((ds.path / "zarr.json").read_text())["attributes"])
    for f in ds.fields:
        data = ds.read_range(f, 0, len(ds))
        strings = isinstance(data, list)
        a = g.create_array(f, shape=(len(ds), *(() if strings else data.shape[1:])), chunks=(1, *(() if strings else data.shape[1:])),
                           dtype=str if strings else "uint8")  # fmt: skip
        a[:] = np.array(data, dtype=object) if strings else data
    return open_dataset(dest)


def _same(a, b):
    if isinstance(a, list) or isinstance(b, list):
        assert isinstance(a, list) and isinstance(b, list) and a == b
    else:
        assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape and np.array_equal(a, b)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # home: one catalog for all
@given(count=st.integers(1, 9), shard=st.integers(1, 4), size=st.integers(8, 10), seed=st.integers(0, 99), real=st.booleans(), data=st.data())
def test_every_way_of_reading_a_dataset_gives_the_same_samples(count, shard, size, seed, real, data, home, tmp_path_factory):
    """Any index set (repeated, unsorted, negative, empty), any slice bounds, the fast reader and zarr-python's path."""
    spec = build_spec("p", "builtin:samples", count, size, seed, None if real else "mild", shard_size=shard, real=real)
    made = tmp_path_factory.mktemp("p")
    fast = open_dataset(create_dataset(spec, store=str(made / "fast.zarr"), workers=1, scheduler="threads").path)
    slow = _zarr_python_copy(fast, made / "slow.zarr")
    assert slow._layouts == dict.fromkeys(slow.fields) and None not in fast._layouts.values()  # the two paths
    n = len(fast)
    one = {f: [fast.read(f, i) for i in range(n)] for f in fast.fields}
    for ds in (fast, slow):
        for i in range(-n, n):
            s = ds[i]
            assert s["index"] == i % n and s.keys() == {"index", *ds.fields}
            for f in ds.fields:
                v = ds.read(f, i)
                assert (s[f] == json.loads(v)) if isinstance(v, str) else np.array_equal(s[f], v)
                assert (v == one[f][i]) if isinstance(v, str) else np.array_equal(v, one[f][i])
        for f in ds.fields:
            for _ in range(6):
                idx = data.draw(st.lists(st.integers(-n, n - 1), max_size=2 * n + 1), label="indices")
                got = ds.read_many(f, idx)
                _same(got, [one[f][i] for i in idx] if f in ("params", "source") else
                      np.stack([one[f][i] for i in idx]) if idx else np.zeros((0, *one[f][0].shape), np.uint8))  # fmt: skip
                if not isinstance(got, list):
                    buf = np.full_like(got, 7)
                    assert ds.read_many(f, np.array(idx, dtype=np.int64), out=buf) is buf and np.array_equal(buf, got)
                a, b = data.draw(st.integers(-n - 2, n + 2), label="start"), data.draw(st.integers(-n - 2, n + 2), label="stop")
                want = list(range(n))[a:b]
                got = ds.read_range(f, a, b)
                _same(got, [one[f][i] for i in want] if f in ("params", "source") else
                      np.stack([one[f][i] for i in want]) if want else np.zeros((0, *one[f][0].shape), np.uint8))  # fmt: skip
            for bad in (n, -n - 1, 10**30):
                with pytest.raises(IndexError):
                    ds.read_many(f, [0, bad])
            for bad in (True, np.bool_(False), 1.0, "1", None):  # what read refuses, every way of reading refuses
                for read in (lambda: ds.read(f, bad), lambda: ds[bad], lambda: ds.read_many(f, [bad]),
                             lambda: ds.read_range(f, bad, n), lambda: ds.read_range(f, 0, bad)):  # fmt: skip
                    with pytest.raises(TypeError, match="are integers"):
                        read()


# -- recipes: any damage to a valid recipe is a one-line RecipeError, or a recipe that works ---------------
_JUNK = st.sampled_from([
    None, "", "x", "jpeg", "sequence", "1e5", [], {}, [1], [2, 1], [1, 2, 3], [[1, 2], [3]], [None, None], {"op": "jpeg"}, {"p": 2},
    True, False, 0, 1, -1, 0.5, -0.0, 5e-324, 1e308, -1e308, 2**64, -(2**64), 10**400, 10**5000, float("nan"), float("inf"),
    [float("nan"), 1], [0, 10**400], b"x", {1, 2}, (1, 2), np.float64("nan"), np.int64(3), np.bool_(True), np.uint64(2**64 - 1),
    np.array([1, 2]), np.array([3, 5]), [[[[[]]]]],
])  # fmt: skip
_KEYS = st.sampled_from(["p", "k", "weights", "shuffle", "version", "op", "seed", "name", "steps", "maybe", "zzz", 1, None, (1,)])


def _containers(obj, out, depth=0):
    if isinstance(obj, (dict, list)) and depth < 20:
        out.append(obj)
        for v in obj.values() if isinstance(obj, dict) else obj:
            _containers(v, out, depth + 1)
    return out


@st.composite
def _damaged(draw):
    rec = {"name": "t", "steps": copy.deepcopy(draw(_STEPS))}
    for _ in range(draw(st.integers(1, 3))):
        c = draw(st.sampled_from(_containers(rec, [])))
        if not c:
            continue
        at = draw(st.sampled_from(list(c) if isinstance(c, dict) else range(len(c))))
        how = draw(st.sampled_from(["junk", "drop", "add", "wrap", "deep"]))
        if how == "junk":
            c[at] = copy.deepcopy(draw(_JUNK))
        elif how == "drop":
            del c[at]
        elif how == "add" and isinstance(c, dict):
            c[draw(_KEYS)] = copy.deepcopy(draw(_JUNK))
        elif how == "add":
            c.append(copy.deepcopy(draw(_JUNK)))
        elif how == "wrap":
            c[at] = [c[at]] if isinstance(c, dict) else {"sequence": [c[at]]}
        else:
            for _ in range(draw(st.sampled_from([2, 70, 3000]))):
                c[at] = [c[at]]
    return rec


@settings(max_examples=150, deadline=None)
@given(rec=_damaged())
@example(rec={"steps": [{"op": "gaussian_blur", "ksize": np.array([3, 5])}]})  # numpy's 'truth value of an array is ambiguous'
@example(rec={"steps": [{"op": "downscale", "up": ["nearest", np.array([1, 2])]}]})
def test_a_damaged_recipe_is_one_recipe_error_or_a_recipe_that_works(rec):
    from degrade import Recipe, RecipeError, replay

    try:
        r = Recipe.from_dict(rec)
    except RecipeError as e:
        assert "\n" not in str(e) and len(str(e)) < 1000
        return
    assert Recipe.from_dict(json.loads(r.to_json())).hash == r.hash
    img = np.arange(30, dtype=np.uint8).reshape(5, 2, 3)
    out = r.apply(img, 3, 4)
    image, mask = replay(img, json.loads(json.dumps(out.params)))
    assert np.array_equal(image, out.image) and np.array_equal(mask, out.mask)


@st.composite
def _damaged_record(draw):
    from degrade import load_recipe

    record = copy.deepcopy(load_recipe(draw(st.sampled_from(["old-photo", "bopbtl", "severe"]))).sample_params(0, draw(st.integers(0, 50))))
    for _ in range(draw(st.integers(1, 2))):
        entries = [e for e in record if isinstance(e, dict) and isinstance(e.get("params"), dict)]
        if not entries:
            break
        e = draw(st.sampled_from(entries))
        how = draw(st.sampled_from(["value", "entry", "drop", "add", "other_op", "append"]))
        if how == "value" and e["params"]:
            e["params"][draw(st.sampled_from(sorted(e["params"], key=str)))] = copy.deepcopy(draw(_JUNK))
        elif how == "entry":
            e[draw(st.sampled_from(["op", "version", "params", "path"]))] = copy.deepcopy(draw(_JUNK))
        elif how == "drop" and e["params"]:
            del e["params"][draw(st.sampled_from(sorted(e["params"], key=str)))]
        elif how == "add":
            e["params"][draw(st.sampled_from(["zz", "seed", "self", 1, None]))] = copy.deepcopy(draw(_JUNK))
        elif how == "other_op":
            e["op"] = draw(st.sampled_from(sorted(o.name for o in __import__("degrade").list_operators())))
        elif how == "append":
            record.append(copy.deepcopy(draw(_JUNK)))
    return record


@settings(max_examples=150, deadline=None)
@given(record=_damaged_record(), gray=st.booleans())
@example(record=[{"op": "jpeg", "version": 1, "params": {"quality": 10**5000}}], gray=False)  # Python's 4,300-digit ValueError
@example(record=[{"op": 10**5000, "version": 1, "params": {}}], gray=False)
@example(record=[{"op": "jpeg", "version": 10**5000, "params": {"quality": 5}}], gray=False)
@example(record=[{"op": "jpeg", "version": 1, "params": {"quality": 5, "zz": 0, 1: 2}}], gray=True)  # sorted() of 1 and 'zz'
def test_a_damaged_params_record_is_one_recipe_error_or_replays(record, gray):
    """replay(image, record) and Operator.apply(image, params) on hand-made records: a one-line RecipeError or an image."""
    from degrade import RecipeError, get_operator, replay

    img = np.arange(42, dtype=np.uint8).reshape(7, 2, 3)
    img = img[..., 0].copy() if gray else img
    try:
        out, mask = replay(img, record)
        assert out.shape == img.shape and out.dtype == np.uint8 and mask.shape == img.shape[:2]
    except RecipeError as e:
        assert "\n" not in str(e) and len(str(e)) < 1000
    for e in record:
        if isinstance(e, dict) and isinstance(e.get("op"), str) and e["op"] in __import__("degrade").OPERATORS:
            try:
                get_operator(e["op"])().apply(img, e.get("params"))
            except RecipeError as err:
                assert "\n" not in str(err) and len(str(err)) < 1000


# -- operators at the corners of their ranges, on thin and tiny images ---------------------------------------
def _corner(spec, data):
    from degrade.params import Bool, Choice, Float, Int

    if isinstance(spec, Float):
        lo = spec.lo if not spec.log else max(spec.lo, 5e-324)
        return float(data.draw(st.sampled_from([lo, spec.hi, float(np.nextafter(lo, spec.hi)), float(np.nextafter(spec.hi, lo))])))
    if isinstance(spec, Int):
        return data.draw(st.sampled_from([spec.lo, spec.hi]))
    if isinstance(spec, Choice):
        return data.draw(st.sampled_from(spec.options))
    assert isinstance(spec, Bool)
    return data.draw(st.booleans())


_OPS = [(c.name, v) for c in __import__("degrade").list_operators() if c.name != "imgaug" for v in (c.version, *c.earlier)]


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from(_OPS), shape=st.sampled_from([(1, 1), (1, 17), (17, 1), (2, 2), (1, 1, 3), (1, 23, 3), (23, 1, 3), (40, 3), (3, 40, 3)]),
       flat=st.sampled_from([None, 0, 255]), data=st.data())  # fmt: skip
def test_every_operator_at_the_ends_of_its_ranges_on_thin_images(op, shape, flat, data):
    """Each parameter at its bounds (or one step inside), any seed: same shape and dtype, a 0/255 mask, no change outside it."""
    from degrade import STRUCTURED, get_operator

    cls = get_operator(op[0])
    params = {k: _corner(spec, data) for k, spec in cls.params.items()}
    if cls.seeded:
        params["seed"] = data.draw(st.sampled_from([0, 2**32 - 1]) | st.integers(0, 2**32 - 1))
    img = np.random.default_rng(data.draw(st.integers(0, 99))).integers(0, 256, shape, dtype=np.uint8)
    if flat is not None:
        img[:] = flat
    operator = cls(_version=op[1])
    out, mask = operator.apply(img, params)
    assert out.shape == img.shape and out.dtype == np.uint8
    again, mask2 = operator.apply(img, params)
    assert np.array_equal(out, again) and (mask is None) == (mask2 is None)
    if mask is not None:
        assert mask.shape == img.shape[:2] and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask, mask2)
    if cls.kind == STRUCTURED:
        changed = out != img if img.ndim == 2 else np.any(out != img, axis=-1)
        assert not np.any(changed & ((mask if mask is not None else 0) == 0))


# -- sampling: a sample's record depends on (seed, index) alone ------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(steps=_STEPS, seed=st.integers(0, 2**64 - 1), indices=st.lists(st.integers(0, 2**63 - 1), min_size=2, max_size=6), order=st.randoms())
def test_records_do_not_depend_on_which_samples_were_drawn_before(steps, seed, indices, order):
    from degrade import Recipe

    r = Recipe.from_dict({"steps": steps})
    first = {i: r.sample_params(seed, i) for i in indices}
    shuffled = list(indices)
    order.shuffle(shuffled)
    again = Recipe.from_dict(json.loads(r.to_json()))
    assert {i: again.sample_params(seed, i) for i in shuffled} == first
    img = np.arange(24, dtype=np.uint8).reshape(4, 2, 3)
    outs = {i: r.apply(img, seed, i) for i in shuffled[:3]}
    for i in reversed(shuffled[:3]):
        o = again.apply(img, seed, i)
        assert o.params == first[i] and np.array_equal(o.image, outs[i].image) and np.array_equal(o.mask, outs[i].mask)


# -- references: any text opens a dataset or is one DaguerreError ---------------------------------------------
def test_any_reference_opens_a_dataset_or_is_one_error(home, tmp_path, monkeypatch):
    from degrade.errors import DaguerreError
    from pipelines.refs import parse_ref

    create_dataset(build_spec("t", "builtin:samples", 2, 8, 0, "mild"), workers=1, scheduler="threads")
    monkeypatch.chdir(tmp_path)
    tails = st.text(max_size=8) | st.sampled_from(["9" * 5000, "1" * 63, "1" * 64, "0", "1", "-1", "1\n", " 1"])
    heads = st.sampled_from(["t@", "t@v", "t@v1", "t", "~", "~nobody-such-user/", "./", "x.zarr"])
    text = st.text(max_size=12) | st.builds(str.__add__, heads, tails)

    @settings(max_examples=200, deadline=None)
    @given(text=text)
    @example(text="t@v" + "9" * 5000)  # int() refuses 4,300 digits: an internal ValueError
    @example(text="~nobody-such-user/x.zarr")  # Path.expanduser: an internal RuntimeError
    def check(text):
        try:
            ds = open_dataset(text)
        except DaguerreError as e:
            assert "\n" not in str(e) or "\n" in text.strip()  # a path may hold a newline, and the message names it
        except OSError as e:  # the system's answer (a name too long), which the CLI shows as one line
            assert e.strerror
        else:
            assert len(ds) == 2 and parse_ref(text).name in ("t", None)

    check()
    for store in ("~nobody-such-user/x.zarr", "./~x.zarr"):  # Path("./~x.zarr") is "~x.zarr": expanded too
        try:
            create_dataset(build_spec("s", "builtin:samples", 2, 8, 0, "mild"), store=store, workers=1, scheduler="threads")
        except DaguerreError as e:
            assert str(e) == f"--store {store}: cannot expand '~' (no such user or home folder)"
    assert open_dataset("./~x.zarr").attrs["name"] == "s" and not (tmp_path / "~nobody-such-user").exists()
    with pytest.raises(DaguerreError, match="unknown source '~nobody-such-user/photos'"):
        build_spec("s", "~nobody-such-user/photos", 2, 8, 0)

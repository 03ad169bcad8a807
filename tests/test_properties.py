"""Property tests across modules: random recipes (valid and not), operators at their extremes, the dataset reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import build_spec, create_dataset, open_dataset


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
@given(count=st.integers(1, 9), shard=st.integers(1, 4), size=st.integers(8, 10), seed=st.integers(0, 99), data=st.data())
def test_every_way_of_reading_a_dataset_gives_the_same_samples(count, shard, size, seed, data, home, tmp_path_factory):
    """Any index set (repeated, unsorted, negative, empty), any slice bounds, the fast reader and zarr-python's path."""
    spec = build_spec("p", "builtin:samples", count, size, seed, "mild", shard_size=min(shard, max(count, 1)))
    made = tmp_path_factory.mktemp("p")
    fast = open_dataset(create_dataset(spec, store=str(made / "fast.zarr"), workers=1, scheduler="threads").path)
    slow = _zarr_python_copy(fast, made / "slow.zarr")
    assert slow._layouts == dict.fromkeys(slow.fields) and fast._layouts["clean"] is not None  # the two paths
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

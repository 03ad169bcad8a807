import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from degrade.errors import RecipeError
from degrade.params import Bool, Choice, Float, Int


def test_float_accepts_value_and_range_and_rejects_outside():
    f = Float(0.1, 5.0, default=(0.5, 1.0))
    assert f.normalize(1, "x") == 1.0 and isinstance(f.normalize(1, "x"), float)
    assert f.normalize([0.2, 3], "x") == [0.2, 3.0]
    assert f.normalize([2, 2], "x") == 2.0  # a degenerate range is a value
    with pytest.raises(RecipeError, match=r"^steps\[3\]\.sigma: 9\.0 is outside \[0\.1, 5\.0\]$"):
        f.normalize(9.0, "steps[3].sigma")
    with pytest.raises(RecipeError, match="reversed"):
        f.normalize([3, 1], "x")
    for bad in ("a", None, [1], [1, 2, 3], True, float("nan")):
        with pytest.raises(RecipeError):
            f.normalize(bad, "x")


def test_declared_bounds_are_inside_the_range():
    """[lo, hi] is closed: a recipe may ask for either bound, as a value or as the end of a range."""
    f = Float(0.1, 5.0, default=1.0)
    assert f.normalize(0.1, "x") == 0.1 and f.normalize(5.0, "x") == 5.0
    assert f.normalize([0.1, 5.0], "x") == [0.1, 5.0]
    i = Int(1, 100, default=50)
    assert i.normalize(1, "q") == 1 and i.normalize(100, "q") == 100 and i.normalize([1, 100], "q") == [1, 100]
    with pytest.raises(RecipeError, match="outside"):
        f.normalize(5.0000001, "x")
    with pytest.raises(RecipeError, match="outside"):
        i.normalize(101, "q")


def test_int_range_and_types():
    i = Int(1, 100, default=50)
    assert i.normalize(5.0, "q") == 5 and isinstance(i.normalize(5.0, "q"), int)
    with pytest.raises(RecipeError):
        i.normalize(5.5, "q")
    with pytest.raises(RecipeError, match="outside"):
        i.normalize(0, "q")


def test_choice_keeps_declared_order_and_rejects_unknown():
    c = Choice(("nearest", "linear", "cubic"), default="linear")
    assert c.normalize(["cubic", "nearest"], "u") == ["nearest", "cubic"]
    assert c.normalize("cubic", "u") == "cubic"
    with pytest.raises(RecipeError, match="not one of"):
        c.normalize("bicubic", "u")
    ints = Choice((0, 3, 5), default=0)
    with pytest.raises(RecipeError):
        ints.normalize(True, "k")  # a bool is not the integer 1


def test_bool_takes_flags_and_probabilities():
    b = Bool(default=True)
    assert b.normalize(True, "f") is True
    assert b.normalize(0.3, "f") == 0.3
    assert b.normalize(1.0, "f") is True
    with pytest.raises(RecipeError):
        b.normalize(1.5, "f")


@given(lo=st.floats(-100, 100), span=st.floats(0, 100), seed=st.integers(0, 2**32 - 1))
def test_float_samples_stay_in_configured_range(lo, span, seed):
    f = Float(-100.0, 200.0, default=0.0)
    setting = f.normalize([lo, lo + span], "x")
    v = f.sample(setting, np.random.default_rng(seed))
    assert isinstance(v, float)
    assert lo <= v <= lo + span


@given(a=st.integers(0, 50), b=st.integers(0, 50), seed=st.integers(0, 2**32 - 1))
def test_int_samples_inclusive(a, b, seed):
    lo, hi = min(a, b), max(a, b)
    i = Int(0, 50, default=0)
    v = i.sample(i.normalize([lo, hi], "n"), np.random.default_rng(seed))
    assert isinstance(v, int) and lo <= v <= hi


def test_int_samples_reach_both_ends():
    """An integer range is inclusive at both ends: [2, 4] draws 2, 3 and 4 (in about equal shares)."""
    i = Int(0, 50, default=0)
    rng = np.random.default_rng(0)
    draws = [i.sample([2, 4], rng) for _ in range(600)]
    assert set(draws) == {2, 3, 4}
    assert all(abs(draws.count(v) / 600 - 1 / 3) < 0.07 for v in (2, 3, 4))


def test_bool_probability_is_the_share_of_true():
    b = Bool(default=0.2)
    rng = np.random.default_rng(0)
    assert abs(np.mean([b.sample(0.2, rng) for _ in range(4000)]) - 0.2) < 0.03
    assert abs(np.mean([b.sample(0.9, rng) for _ in range(4000)]) - 0.9) < 0.03
    assert b.sample(True, rng) is True and b.sample(False, rng) is False


def test_log_uniform_sampling_is_log_spread():
    f = Float(1.0, 1000.0, default=(1.0, 1000.0), log=True)
    rng = np.random.default_rng(0)
    xs = np.array([f.sample([1.0, 1000.0], rng) for _ in range(4000)])
    # log-uniform: a third of the mass per decade
    assert abs(np.mean(xs < 10) - 1 / 3) < 0.03
    assert abs(np.mean(xs > 100) - 1 / 3) < 0.03


@given(x=st.floats(1.0, 999.0), ulps=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_log_uniform_samples_stay_in_narrow_ranges(x, ulps, seed):
    """exp(log(x)) rounds: [14.0, 14.000000000000002] drew 14.000000000000004 in most samples."""
    import math

    hi = x
    for _ in range(ulps):
        hi = math.nextafter(hi, 2000.0)
    f = Float(1.0, 1000.0, default=(10.0, 300.0), log=True)
    rng = np.random.default_rng(seed)
    assert all(x <= f.sample([x, hi], rng) <= hi for _ in range(8))
    assert x <= f.sample([x, hi], rng) <= hi
    assert 14.0 <= f.sample([14.0, 14.000000000000002], np.random.default_rng(0)) <= 14.000000000000002

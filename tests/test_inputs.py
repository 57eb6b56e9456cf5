"""Numbers and text from a user or a script: NaN, infinities, huge and wrong-typed values get a plain message."""
import math

import numpy as np
import pytest

from demo_core.errors import InputError
from demo_core.inputs import MAX_SEED, check_number, check_seed, check_text


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float32("nan"), "nan", "Infinity"])
def test_nan_and_infinities_are_refused(bad):
    with pytest.raises(InputError, match="The setting must be a finite number"):
        check_number(bad, "The setting", 0, 1)


@pytest.mark.parametrize("bad", [None, "three", [1], {}, True, 0.5j])
def test_what_is_not_a_number_is_refused(bad):
    with pytest.raises(InputError, match="must be a number"):
        check_number(bad, "The setting", 0, 1)


def test_range_and_whole_numbers():
    assert check_number(0.5, "x", 0, 1) == 0.5 and check_number("0.25", "x", 0, 1) == 0.25
    assert check_number(3.0, "k", 1, 48, integer=True) == 3 and isinstance(check_number(3.0, "k", 1, 48, integer=True), int)
    with pytest.raises(InputError, match="k must be between 1 and 48"):
        check_number(300, "k", 1, 48, integer=True)
    with pytest.raises(InputError, match="between 1 and 48"):
        check_number(-5, "k", 1, 48, integer=True)
    with pytest.raises(InputError, match="whole number"):
        check_number(2.5, "k", 1, 48, integer=True)


def test_seeds_are_compared_exactly():
    assert check_seed(MAX_SEED) == MAX_SEED  # a float would round it up to 2**63, past the bound
    assert check_seed(np.int64(7)) == 7
    for bad in (10**30, 1e30, -1, MAX_SEED + 1):
        with pytest.raises(InputError, match="The seed must be between 0 and"):
            check_seed(bad)


def test_text():
    assert check_text(None, "Labels", max_chars=5) == "" and check_text("cat", "Labels", max_chars=5) == "cat"
    with pytest.raises(InputError, match="Labels must be text"):
        check_text(5, "Labels", max_chars=5)
    with pytest.raises(InputError, match="Labels: 8 characters, more than the 5 accepted"):
        check_text("cat, dog", "Labels", max_chars=5)

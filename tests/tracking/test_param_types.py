"""The type record of logged params (tracking/param_types.py): written with the params,
decoded on read, nothing guessed from the strings."""

from __future__ import annotations

import json

import numpy as np

from mlops_jupyter.tracking import param_types as pt
from mlops_jupyter.tracking.validation import MAX_TAG_VAL_LENGTH

VALUES = {
    "n": 100,
    "lr": 0.1,
    "neg": -3,
    "big": 10**30,
    "flag": True,
    "off": False,
    "none": None,
    "name": "baseline",
    "digits": "10",
    "layers": [64, 32],
    "shape": (3, 4),
    "grid": {"a": [1, 2]},
    "np_int": np.int64(7),
    "np_float": np.float64(0.25),
    "np_bool": np.bool_(True),
}


def stored(values):
    return {k: v if isinstance(v, str) else str(v) for k, v in values.items()}


def test_round_trip_of_every_recorded_type():
    tags = pt.encode(VALUES)
    got = pt.decode(stored(VALUES), tags)
    assert got == VALUES
    for k in ("n", "neg", "big", "np_int"):
        assert type(got[k]) is int
    assert type(got["lr"]) is float and type(got["flag"]) is bool and got["none"] is None
    assert type(got["layers"]) is list and type(got["shape"]) is tuple and type(got["grid"]) is dict
    assert pt.recorded(tags)["np_bool"] == "bool"


def test_strings_stay_strings_and_nothing_is_guessed():
    tags = pt.encode({"digits": "10", "word": "True"})
    assert tags == {}  # strings need no record
    assert pt.decode({"digits": "10", "word": "True"}, tags) == {"digits": "10", "word": "True"}
    # a param logged by a plain MLflow client: no record, the string MLflow holds
    tags = pt.encode({"n": 1})
    assert pt.decode({"n": "1", "plain": "10"}, tags) == {"n": 1, "plain": "10"}


def test_values_that_do_not_round_trip_are_not_recorded():
    class Thing:
        def __str__(self):
            return "[1, 2]"

    for v in (Thing(), object(), [object()], {1, 2}, b"x", 1 + 2j):
        assert pt.type_of(v) is None, v


def test_a_record_that_does_not_fit_the_string_keeps_the_string():
    tags = {pt.TYPES_TAG: json.dumps({"a": "int", "b": "bool", "c": "list", "d": "none", "e": "bogus"})}
    got = pt.decode({"a": "x1", "b": "yes", "c": "[1,", "d": "nothing", "e": "1"}, tags)
    assert got == {"a": "x1", "b": "yes", "c": "[1,", "d": "nothing", "e": "1"}
    assert pt.decode({"a": "1"}, {pt.TYPES_TAG: "not json"}) == {"a": "1"}


def test_many_params_spread_over_parts_each_within_mlflows_limit():
    values = {f"param_{i:04d}_{'x' * 60}": i for i in range(600)}
    tags = pt.encode(values)
    assert len(tags) > 1 and all(len(v) <= MAX_TAG_VAL_LENGTH for v in tags.values())
    assert list(tags)[:3] == [pt.TYPES_TAG, f"{pt.TYPES_TAG}.1", f"{pt.TYPES_TAG}.2"]
    assert all(pt.is_types_tag(k) for k in tags) and not pt.is_types_tag("mlops.param_types.x")
    assert pt.decode(stored(values), tags) == values
    # logging more later rewrites the last part and adds parts: earlier parts do not move
    more = {**values, **{f"late_{i}_{'y' * 60}": float(i) for i in range(300)}}
    later = pt.encode(more)
    assert all(later[k] == v for k, v in tags.items() if k != list(tags)[-1])
    assert pt.decode(stored(more), later) == more

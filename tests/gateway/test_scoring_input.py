"""The scoring JSON turned into a model's input: types checked per column on the numeric path.

These run the gateway's parser on its own (``LoadedVersion.parse``, as the gateway calls it
for every request body) with a real scikit-learn model; the HTTP side of the same checks is
in ``test_gateway.py`` (``test_bad_requests_get_a_4xx_json_error_naming_the_problem``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mlops_jupyter.gateway.models import ClientError, LoadedVersion, warm


def version(kinds: list[str] | None) -> LoadedVersion:
    """A version over a number column ``x`` and a bool column ``flag`` on the numeric path."""
    X = np.array([[0.5, 0.0], [1.5, 1.0], [2.5, 0.0], [3.5, 1.0]])
    model = LogisticRegression().fit(X, [0, 1, 0, 1])
    lv = LoadedVersion(
        tenant="t",
        model_id="m",
        version="1.0.0",
        path="",
        sha256="",
        model=model,
        flavor="sklearn",
        columns=["x", "flag"] if kinds else None,
        kinds=kinds,
        n_features=2,
    )
    warm(lv, {"columns": ["x", "flag"], "data": [[1.5, True]]} if kinds else {"data": [[1.5, 1.0]]})
    assert lv.numeric, "the test needs the numeric fast path"
    return lv


def parse(lv: LoadedVersion, payload: object) -> np.ndarray:
    x, _, _ = lv.parse(json.dumps(payload).encode())
    return x


def refused(lv: LoadedVersion, payload: object) -> str:
    with pytest.raises(ClientError) as err:
        parse(lv, payload)
    assert err.value.status == 400 and err.value.code == "BAD_REQUEST"
    return err.value.message


def test_a_bool_column_takes_true_false_and_a_number_column_numbers():
    lv = version(["number", "bool"])
    x = parse(lv, {"dataframe_split": {"columns": ["flag", "x"], "data": [[True, 1.5], [False, 2]]}})
    assert x.dtype == np.float64 and x.tolist() == [[1.5, 1.0], [2.0, 0.0]]
    assert parse(lv, {"dataframe_records": [{"x": 3, "flag": False}]}).tolist() == [[3.0, 0.0]]


@pytest.mark.parametrize(
    "payload,message",
    [
        # numbers in the bool column: looked at even when the body has no true/false at all
        ({"instances": [[1.5, 1]]}, "Column 'flag' expects true/false; row 0 has 1 (int)."),
        ({"instances": [[1.5, True], [2.5, 0.0]]}, "Column 'flag' expects true/false; row 1 has 0.0 (float)."),
        ({"dataframe_records": [{"x": 1.5, "flag": None}]}, "Column 'flag' expects true/false; row 0 has null."),
        ({"dataframe_records": [{"x": 1.5, "flag": "y"}]}, "Column 'flag' expects true/false; row 0 has 'y' (str)."),
        # bools in the number column, alone or among numbers
        ({"instances": [[True, False]]}, "Column 'x' expects numbers; row 0 has true (bool)."),
        (
            {"dataframe_split": {"columns": ["flag", "x"], "data": [[True, 1.5], [True, False]]}},
            "Column 'x' expects numbers; row 1 has false (bool).",
        ),
        ({"instances": [[None, True]]}, "Column 'x' expects numbers; row 0 has null."),
    ],
)
def test_a_value_of_the_wrong_type_is_a_client_error_naming_column_row_and_value(payload, message):
    assert refused(version(["number", "bool"]), payload) == message


def test_without_column_types_bools_are_numbers_as_numpy_reads_them():
    lv = version(None)
    assert parse(lv, {"instances": [[True, 2.5], [1.5, False]]}).tolist() == [[1.0, 2.5], [1.5, 0.0]]

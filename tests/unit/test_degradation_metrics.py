"""What a query answer means: a value, no data, or unavailable (never a zero made up)."""

from __future__ import annotations

import pytest

from hakeeper.degradationpolicy.metrics import reading_from_result


@pytest.mark.parametrize(("result", "outcome", "value", "words"), [
    ([{"metric": {}, "value": [1700000000.1, "0.93"]}], "value", 0.93, ""),
    ([{"metric": {"job": "api"}, "value": [1700000000.1, "+Inf"]}], "value", float("inf"), ""),
    ([1700000000.1, "42"], "value", 42.0, ""),  # a scalar result
    ([], "no-data", None, "no series"),
    ([{"metric": {}, "value": [1700000000.1, "NaN"]}], "no-data", None, "NaN"),
    ([{"metric": {"a": "1"}, "value": [1, "1"]}, {"metric": {"a": "2"}, "value": [1, "2"]}], "unavailable", None,
     'returns 2 series ({a="1"}, {a="2"}...); wrap it in max() or sum()'),
    ([{"metric": {}, "values": [[1, "1"], [2, "2"]]}], "unavailable", None, "range vector"),
    ([1700000000.1, "soon"], "unavailable", None, "not a number"),
])
def test_query_results_are_classified(result, outcome, value, words):
    reading = reading_from_result(result)
    assert reading.outcome == outcome
    assert reading.value == value
    assert words in reading.message

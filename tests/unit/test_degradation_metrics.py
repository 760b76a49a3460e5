"""What a query answer means: a value, no data, or unavailable (never a zero made up)."""

from __future__ import annotations

import pytest

from hakeeper.api.degradationpolicy import Trigger
from hakeeper.degradationpolicy.decide import classify
from hakeeper.degradationpolicy.metrics import reading_from_result


@pytest.mark.parametrize(("result", "outcome", "value", "words"), [
    ([{"metric": {}, "value": [1700000000.1, "0.93"]}], "value", 0.93, ""),
    # an infinity (a ratio over an idle denominator) is no measurement: it must never breach
    ([{"metric": {"job": "api"}, "value": [1700000000.1, "+Inf"]}], "no-data", None, "returned +Inf"),
    ([{"metric": {}, "value": [1700000000.1, "-Inf"]}], "no-data", None, "returned -Inf"),
    ([1700000000.1, "+Inf"], "no-data", None, "returned +Inf"),  # a scalar result
    ([{"metric": {}, "value": [1700000000.1, "1e308"]}], "value", 1e308, ""),  # large is still a value
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


@pytest.mark.parametrize("operator", [">", "<"])
def test_an_infinity_neither_breaches_nor_recovers(operator):
    """+Inf above a `>` threshold (or -Inf below a `<` one) would breach if it counted as a value."""
    trigger = Trigger.model_validate({"name": "errors", "query": "q", "operator": operator, "threshold": 0.5})
    infinity = "+Inf" if operator == ">" else "-Inf"
    assert classify(trigger, reading_from_result([{"metric": {}, "value": [1, infinity]}])) == "NoData"
    # the control: a finite value past the threshold does breach
    finite = "0.9" if operator == ">" else "0.1"
    assert classify(trigger, reading_from_result([{"metric": {}, "value": [1, finite]}])) == "Breaching"

"""How a FHIR search is answered beside its filters (pure): _count, _summary, _sort, and the
parameters ignored, or refused under strict handling."""

from __future__ import annotations

import pytest

from service.domain.errors import DomainError
from service.domain.fhir.capability import BY_TYPE, DEFAULT_COUNT, MAX_COUNT
from service.domain.fhir.search import result_parameters

APPOINTMENT, SLOT = BY_TYPE["Appointment"], BY_TYPE["Slot"]


def test_count_defaults_and_is_clamped_to_the_maximum():
    assert result_parameters(APPOINTMENT).count == DEFAULT_COUNT
    assert result_parameters(APPOINTMENT, count=7).count == 7
    assert result_parameters(APPOINTMENT, count=10**6).count == MAX_COUNT
    assert result_parameters(APPOINTMENT, count=10**6, strict=True).count == MAX_COUNT


def test_summary_count_and_count_zero_ask_for_the_total_only():
    for kwargs in ({"summary": "count"}, {"count": 0}):
        answer = result_parameters(APPOINTMENT, **kwargs)
        assert (answer.summary_count, answer.count, answer.ignored) == (True, 0, ())
    assert result_parameters(APPOINTMENT, summary="false").summary_count is False


def test_sort_on_the_date_either_way():
    assert result_parameters(APPOINTMENT, sort="date").descending is False
    assert result_parameters(APPOINTMENT, sort="-date").descending is True
    assert result_parameters(SLOT, sort="start").descending is False


@pytest.mark.parametrize(("resource", "kwargs", "name"), [
    (APPOINTMENT, {"sort": "status"}, "_sort"),
    (APPOINTMENT, {"sort": "date,status"}, "_sort"),
    (SLOT, {"sort": "-start"}, "_sort"),
    (APPOINTMENT, {"summary": "true"}, "_summary"),
    (SLOT, {"summary": "count"}, "_summary"),
    (SLOT, {"count": 0}, "_count"),
])
def test_unsupported_values_are_ignored_or_refused_when_strict(resource, kwargs, name):
    lenient = result_parameters(resource, **kwargs)
    assert lenient.ignored == (name,) and lenient.summary_count is False
    assert lenient.descending is False and lenient.count == DEFAULT_COUNT
    with pytest.raises(DomainError) as refused:
        result_parameters(resource, strict=True, **kwargs)
    assert refused.value.code == "invalid_search_parameter"
    assert refused.value.extras["parameter"] == name


def test_unknown_parameters_are_listed_once_in_the_order_sent():
    answer = result_parameters(APPOINTMENT, unknown=["patinet", "x", "patinet"],
                               sort="status")
    assert answer.ignored == ("patinet", "x", "_sort")

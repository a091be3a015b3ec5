"""How a FHIR search is answered, beside its filters: page size, ``_summary``, ``_sort``, and
which parameters were ignored (pure).

FHIR servers ignore search parameters they do not know or support, and say so, unless the
client asks for strict handling (``Prefer: handling=strict``); then an unsupported value is
refused (``invalid_search_parameter``). ``_count`` is a wish: above the maximum the server
serves the maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.domain.errors import DomainError
from service.domain.fhir.capability import DEFAULT_COUNT, MAX_COUNT, ResourceCapability

SUMMARIES = frozenset({"count", "false"})


def invalid(parameter: str, detail: str) -> DomainError:
    return DomainError(f"{parameter}: {detail}", code="invalid_search_parameter",
                       title="Unsupported search parameter value", parameter=parameter)


@dataclass(frozen=True)
class ResultParameters:
    count: int  # entries per page (0: the total only)
    summary_count: bool  # _summary=count (or _count=0): a Bundle with the total, no entries
    descending: bool  # _sort=-<date>: newest first
    ignored: tuple[str, ...]  # parameters not applied, in the order they were sent


def result_parameters(resource: ResourceCapability, *, count: int | None = None,
                      summary: str | None = None, sort: str | None = None,
                      unknown: Sequence[str] = (), strict: bool = False) -> ResultParameters:
    """Interpret ``_count``, ``_summary`` and ``_sort`` for a search of ``resource``;
    ``unknown``: the names of parameters nobody here knows (already refused when strict)."""
    ignored = list(dict.fromkeys(unknown))

    def unsupported(name: str, detail: str) -> None:
        if strict:
            raise invalid(name, detail)
        ignored.append(name)

    summary_count = False
    if summary is not None:
        if summary not in SUMMARIES:
            unsupported("_summary", "only _summary=count (or false) is supported")
        elif summary == "count" and not resource.counts:
            unsupported("_summary", f"a {resource.type} search has no total")
        else:
            summary_count = summary == "count"
    if count == 0:
        if resource.counts:
            summary_count = True
        else:
            unsupported("_count", f"a {resource.type} search has no total: _count=0 "
                                  "cannot be served")
    descending = False
    if sort is not None:
        if sort not in resource.sorts:
            accepted = ", ".join(resource.sorts) or "none"
            unsupported("_sort", f"{resource.type} sorts on: {accepted}")
        else:
            descending = sort.startswith("-")
    size = DEFAULT_COUNT if not count else min(count, MAX_COUNT)
    return ResultParameters(count=0 if summary_count else size, summary_count=summary_count,
                            descending=descending, ignored=tuple(ignored))

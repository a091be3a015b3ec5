"""The busy arrays PostgreSQL aggregates without ORDER BY (facts._spans): taken as they are
only when their starts ascend strictly, else sorted by (start, end) here."""

from __future__ import annotations

import random

from service.domain.availability import facts


def test_strictly_ascending_arrays_are_taken_as_they_are() -> None:
    starts, ends = [1, 5, 9], [4, 6, 20]
    spans = facts._spans(starts, ends)
    assert spans.starts is starts and spans.ends is ends


def test_arrays_out_of_order_or_tied_are_sorted_by_start_then_end() -> None:
    rng = random.Random(3)
    for _ in range(200):
        pairs = [(s, s + rng.randint(1, 50)) for s in
                 (rng.randint(0, 30) for _ in range(rng.randint(2, 12)))]
        rng.shuffle(pairs)
        spans = facts._spans([s for s, _ in pairs], [e for _, e in pairs])
        assert list(zip(spans.starts, spans.ends, strict=True)) == sorted(pairs)


def test_empty_arrays() -> None:
    spans = facts._spans([], [])
    assert spans.starts == [] and spans.ends == []

"""Unit tests: backoff bounds and spread, Retry-After, event ids, cursor and `since` building."""

import random
import statistics

import pytest

from fanline import Backoff, Cursor, parse_event_id, parse_retry_after


def test_full_jitter_stays_within_the_exponential_ceiling():
    b = Backoff(initial=0.5, maximum=30.0, factor=2.0, rng=random.Random(7))
    assert [b.ceiling(a) for a in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert b.ceiling(10_000) == 30.0
    for attempt in range(12):
        ds = [b.delay(attempt) for _ in range(2000)]
        assert min(ds) >= 0.0 and max(ds) <= b.ceiling(attempt)


def test_full_jitter_spreads_over_the_whole_window():
    b = Backoff(initial=0.5, maximum=30.0, rng=random.Random(1))
    ds = [b.delay(5) for _ in range(5000)]  # window [0, 16]
    assert 7.2 < statistics.mean(ds) < 8.8
    assert min(ds) < 0.5 and max(ds) > 15.5
    # Every tenth of the window gets some clients: no clustering at the edges.
    buckets = [0] * 10
    for d in ds:
        buckets[min(9, int(d / 1.6))] += 1
    assert min(buckets) > 350, buckets


def test_retry_after_is_a_floor_plus_jitter():
    b = Backoff(initial=0.5, maximum=4.0, rng=random.Random(3))
    ds = [b.delay(2, retry_after=5.0) for _ in range(1000)]
    assert min(ds) >= 5.0 and max(ds) <= 7.0
    assert max(ds) - min(ds) > 1.5  # still jittered


def test_backoff_rejects_nonsense():
    with pytest.raises(ValueError):
        Backoff(initial=0)
    with pytest.raises(ValueError):
        Backoff(initial=5, maximum=1)


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 10 ") == 10.0
    assert parse_retry_after("999999") == 3600.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-1") is None
    d = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)  # 10 s before
    assert d == pytest.approx(10.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


@pytest.mark.parametrize(
    "raw,want",
    [
        ("issues.enriched/0/121", ("issues.enriched", 0, 121)),
        ("fanline.events/12/0", ("fanline.events", 12, 0)),
        ("a/b/1/2", ("a/b", 1, 2)),
        ("t/0/-1", None),
        ("t/x/1", None),
        ("t/0/1.5", None),
        ("/0/1", None),
        ("t/0", None),
        ("", None),
        (None, None),
        (5, None),
    ],
)
def test_parse_event_id(raw, want):
    assert parse_event_id(raw) == want


def test_cursor_tracks_the_last_offset_per_partition_and_skips_duplicates():
    c = Cursor()
    assert c.since() is None
    assert c.advance("t", 0, 5)
    assert c.advance("t", 1, 7)
    assert c.advance("t", 0, 6)
    assert not c.advance("t", 0, 6)  # duplicate
    assert not c.advance("t", 0, 3)  # older
    assert c.advance("u", 0, 1)
    assert c.since() == {"t/0": 6, "t/1": 7, "u/0": 1}
    c.epoch = "e1"
    assert c.since() == {"t/0": 6, "t/1": 7, "u/0": 1, "epoch": "e1"}
    c.reset("e2")
    assert c.since() is None and c.epoch == "e2"


def test_cursor_from_a_persisted_since():
    c = Cursor({"t/0": 4, "t/2": 9, "epoch": "e"})
    assert c.offsets == {("t", 0): 4, ("t", 2): 9} and c.epoch == "e"
    assert not c.advance("t", 0, 4)
    assert c.advance("t", 0, 5)
    assert c.snapshot() == {"t/0": 5, "t/2": 9, "epoch": "e"}
    for bad in ({"t": 1}, {"t/x": 1}, {"t/0": "1"}, {"t/0": True}):
        with pytest.raises(ValueError):
            Cursor(bad)

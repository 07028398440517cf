"""prefetched: same items in the same order, errors surface, an early stop ends the producer."""
import pytest

from pipelines.prefetch import prefetched


def test_prefetched_keeps_order_and_raises_the_producers_error():
    assert list(prefetched(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("warehouse went away")

    with pytest.raises(ValueError, match="warehouse went away"):
        list(prefetched(failing()))


def test_prefetched_releases_its_producer_when_the_consumer_stops():
    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    items = prefetched(endless(), depth=1)
    assert next(items) == 0
    items.close()  # the consumer stops early: the producer must not stay blocked
    count = len(produced)
    assert count <= 4
    assert len(produced) == count

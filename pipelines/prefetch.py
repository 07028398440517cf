"""Overlapping the production of items with their use, on a background thread.

Why: reading, decoding and querying in this project run in C++ that releases the GIL (tf.data,
tfx_bsl's decoder, DuckDB), while what consumes their output is mostly Python (Beam, TFDV,
TFT). On two cores, producing the next item while the last one is consumed halves the wall time
of the overlapped part.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Iterator, Tuple


def prefetched(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """`items`, produced by a background thread up to `depth` ahead of the consumer.

    The producer's exception is raised in the consumer, and a consumer that stops early (or
    fails) stops the producer at its next item and waits for it.
    """
    ready: "queue.Queue[Tuple[str, Any]]" = queue.Queue(depth)
    stop = threading.Event()

    def offer(entry: Tuple[str, Any]) -> bool:
        """Queues `entry` unless the consumer is gone; whether it was queued."""
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(("item", item)):
                    return
            offer(("end", None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            offer(("error", error))

    producer = threading.Thread(target=produce, name="prefetch", daemon=True)
    producer.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        producer.join()

"""Keep the garbage collector's pauses out of the latency tail of a serving process.

A built app holds hundreds of thousands of long-lived objects (SQLAlchemy's mappers and
compiled statements, Flask's routing, the migrations that ran). Python's cyclic collector
walks all of them on every full collection, which under load happens every few seconds and
stalls every request in flight for tens of milliseconds. Freezing what start-up built moves it
out of the collector's sight; what requests allocate is still collected as usual.
"""

from __future__ import annotations

import gc


def settle_heap() -> None:
    """Collect start-up garbage once, then freeze every object that survived it."""
    gc.collect()
    gc.freeze()

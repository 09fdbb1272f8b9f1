"""Process-wide tuning applied by the long-running commands (``serve``, ``demo``)."""

from __future__ import annotations

import gc

#: allocations between young-generation collections (CPython's default is 700): parsing a
#: request builds thousands of short-lived dicts, and at 700 the collector ran many times
#: per request, scanning objects that were about to be freed anyway
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    """Collect less often, and never re-scan what exists at start-up (modules, settings,
    caches): measured 20 % less CPU per ingested measure and per batch-upserted entity."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

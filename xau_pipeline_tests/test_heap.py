"""The long-lived heap frozen during a candle step: collections skip what existed before, and still
collect what the step throws away."""

import gc
import weakref

from xau_pipeline.defs.candles.gc_freeze import long_lived_heap_frozen


class Node:
    def __init__(self):
        self.me = self  # a cycle: only the cyclic collector frees it


def tracked_ids() -> set[int]:
    """The objects the collector's generations hold (frozen ones are in none of them)."""
    return {id(o) for o in gc.get_objects()}


def test_inside_the_objects_of_before_are_skipped_and_new_garbage_is_still_collected():
    before = Node()
    assert gc.get_freeze_count() == 0 and id(before) in tracked_ids()
    with long_lived_heap_frozen():
        assert gc.get_freeze_count() > 0
        assert id(before) not in tracked_ids()
        created = Node()
        gone = weakref.ref(created)
        del created
        gc.collect()
        assert gone() is None
    assert gc.get_freeze_count() == 0 and id(before) in tracked_ids()


def test_a_caller_that_froze_the_heap_first_keeps_it_frozen():
    gc.freeze()
    try:
        with long_lived_heap_frozen():
            pass
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()

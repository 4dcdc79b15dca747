"""The check runner spaces out the cyclic collector's passes while a check reads, then restores."""

from __future__ import annotations

import gc
import threading

from feedbot.checks.runner import SPACED_THRESHOLD, collections_spaced


def test_passes_are_spaced_while_a_check_reads_and_restored_after() -> None:
    before = gc.get_threshold()
    with collections_spaced():
        during = gc.get_threshold()
        assert gc.isenabled()
    assert during[0] >= SPACED_THRESHOLD and during[1:] == before[1:]
    assert gc.get_threshold() == before


def test_overlapping_checks_restore_the_threshold_once_at_the_last() -> None:
    before = gc.get_threshold()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[tuple[int, int, int]] = []

    def first() -> None:
        with collections_spaced():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with collections_spaced():
            second_in.set()
            first_out.wait(5)
            seen.append(gc.get_threshold())  # the first check ended: still spaced

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen and seen[0][0] >= SPACED_THRESHOLD
    assert gc.get_threshold() == before

"""The producer's watchdog gives up on a run that stopped moving, and not on one that moves."""

from __future__ import annotations

import pytest

from producer.recovery import Watchdog


def _watchdog(give_up_after: float) -> Watchdog:
    # every=inf: only the stall clock is exercised, no store or broker is touched
    return Watchdog(
        None,
        "r1",
        lambda: None,
        dead_after=20,
        stuck_after=120,
        say=print,  # type: ignore[arg-type]
        every=float("inf"),
        give_up_after=give_up_after,
    )


def test_a_run_that_stops_moving_is_given_up_naming_the_setting() -> None:
    watch = _watchdog(give_up_after=0.0)
    watch(3)  # a node ended just now: the clock restarts
    with pytest.raises(TimeoutError, match="STALL_SECONDS"):
        watch(3)


def test_a_run_that_keeps_moving_is_never_given_up() -> None:
    watch = _watchdog(give_up_after=0.0)
    for done in range(50):
        watch(done)

"""The evaluation clock shared by replay and the daemon."""

from __future__ import annotations

from simwatch.core.clock import EvaluationClock


def test_first_record_starts_at_the_next_boundary() -> None:
    clock = EvaluationClock(60.0)
    assert not clock.started
    assert clock.passes(125.0)
    clock.start_after(125.0)
    assert clock.next_boundary == 180.0
    assert list(clock.due(125.0)) == []
    clock.observe(125.0)
    assert clock.watermark == 125.0


def test_a_record_on_a_boundary_starts_after_it() -> None:
    clock = EvaluationClock(60.0)
    clock.start_after(120.0)
    assert clock.next_boundary == 180.0


def test_a_newer_record_makes_every_passed_boundary_due_once() -> None:
    clock = EvaluationClock(60.0)
    clock.start_after(10.0)
    clock.observe(10.0)
    assert clock.passes(250.0)
    assert list(clock.due(250.0)) == [60.0, 120.0, 180.0, 240.0]
    assert list(clock.due(250.0)) == []  # never twice
    assert clock.next_boundary == 300.0


def test_late_records_never_move_the_clock() -> None:
    clock = EvaluationClock(60.0)
    clock.start_after(100.0)
    clock.observe(200.0)
    assert not clock.passes(150.0)
    clock.observe(150.0)
    assert clock.watermark == 200.0


def test_a_record_before_the_next_boundary_makes_nothing_due() -> None:
    clock = EvaluationClock(60.0)
    clock.start_after(0.0)
    clock.observe(0.0)
    assert not clock.passes(59.0)  # newer, but short of the boundary at 60
    assert clock.passes(60.0)


def test_a_consumer_that_stops_early_does_not_repeat_a_boundary() -> None:
    clock = EvaluationClock(60.0)
    clock.start_at(60.0)
    for boundary in clock.due(600.0):
        assert boundary == 60.0
        break  # the cycle failed
    assert list(clock.due(130.0)) == [120.0]


def test_start_is_idempotent_and_tick_takes_the_closing_boundary() -> None:
    clock = EvaluationClock(300.0)
    assert clock.tick() is None
    clock.start_at(600.0)
    clock.start_after(10_000.0)  # already started: no effect
    assert clock.tick() == 600.0
    assert clock.next_boundary == 900.0

"""Fit a training schedule to a wall-clock budget.

A GPU lent for a few minutes, or a machine shared with other jobs, runs at a speed nobody knows in advance;
a schedule with a fixed number of steps then either stops before its learning rate has decayed or ends early.
StepBudget times a few steps after a warm-up and returns the number of steps that fills the budget; refit()
re-times it later from every step since the probe, for machines whose speed changes under the run (runs
sharing a GPU start training at different moments, so an early probe can see the card half idle)."""
from __future__ import annotations

import time


class StepBudget:
    def __init__(self, minutes: float, probe_start: int = 10, probe_steps: int = 40, reserve: float = 0.12,
                 clock=time.monotonic):
        self.seconds = minutes * 60
        self.probe_start = probe_start
        self.probe_end = probe_start + probe_steps
        self.reserve = reserve  # validation, checkpoints and sample grids also take time
        self.clock = clock
        self.started = clock()
        self.probe_started: float | None = None

    def fitted_total(self, steps_done: int) -> int | None:
        """Call after every step with the steps done in this run; returns the schedule's total once, at the
        end of the probe, else None."""
        now = self.clock()
        if steps_done == self.probe_start:
            self.probe_started = now
        if steps_done != self.probe_end or self.probe_started is None:
            return None
        return self._total(steps_done, now)

    def refit(self, steps_done: int) -> int | None:
        """The total that fills the budget at the mean step time since the probe began (time spent validating
        included, so it errs short), or None before the probe has ended."""
        if self.probe_started is None or steps_done <= self.probe_end:
            return None
        return self._total(steps_done, self.clock())

    def _total(self, steps_done: int, now: float) -> int:
        per_step = (now - self.probe_started) / (steps_done - self.probe_start)
        remaining = self.seconds * (1 - self.reserve) - (now - self.started)
        return steps_done + max(1, int(remaining / max(per_step, 1e-9)))


def stop_after_minutes(max_minutes: float, fit_minutes: float) -> float:
    """The wall-time limit of a run (0 = none): --max-minutes when given; a budget-fitted run also stops at
    110% of its budget, in case the machine slows down after the probe."""
    return max_minutes or fit_minutes * 1.1

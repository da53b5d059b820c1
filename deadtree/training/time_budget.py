"""Fit a training schedule to a wall-clock budget.

A GPU lent for a few minutes, or a machine shared with other jobs, runs at a speed nobody knows in advance;
a schedule with a fixed number of steps then either stops before its learning rate has decayed or ends early.
StepBudget times a few steps after a warm-up and returns the number of steps that fills the budget."""
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
        per_step = (now - self.probe_started) / (self.probe_end - self.probe_start)
        remaining = self.seconds * (1 - self.reserve) - (now - self.started)
        return steps_done + max(1, int(remaining / max(per_step, 1e-9)))


def stop_after_minutes(max_minutes: float, fit_minutes: float) -> float:
    """The wall-time limit of a run (0 = none): --max-minutes when given; a budget-fitted run also stops at
    110% of its budget, in case the machine slows down after the probe."""
    return max_minutes or fit_minutes * 1.1

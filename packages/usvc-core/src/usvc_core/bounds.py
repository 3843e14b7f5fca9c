"""The bounds of a job's numbers, the same at every door (the admin API, the ``usvc``
command, ``Application.enqueue``): a value outside them is refused with a message naming
the field, before any store sees it, so that no door answers with an OverflowError or a
500. The limits fit every store of the kit (Oracle's ``NUMBER(10)``, SQLite's INTEGER,
Python's datetime arithmetic)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from usvc_core.errors import UsvcError

__all__ = [
    "DELAY_SECONDS",
    "MAX_ATTEMPTS",
    "PRIORITY",
    "Bound",
    "OutOfBoundsError",
    "check_enqueue",
]


class OutOfBoundsError(UsvcError, ValueError):
    """A number of a job's request is outside its bounds; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Bound:
    """An inclusive range of one field; ``integer`` refuses fractions (and booleans)."""

    field: str
    low: float
    high: float
    integer: bool = False

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        return f"{kind} from {self.low:g} to {self.high:g}"

    def check[N: (int, float)](self, value: N) -> N:
        """``value`` unchanged when within bounds; OutOfBoundsError naming the field else."""
        wrong = isinstance(value, bool) or not isinstance(value, int | float)
        if not wrong and isinstance(value, float):
            wrong = not math.isfinite(value) or (self.integer and not value.is_integer())
        if wrong or not self.low <= value <= self.high:
            shown = repr(value)  # only for the message: every enqueue checks two numbers
            if len(shown) > 40:
                shown = shown[:37] + "..."
            raise OutOfBoundsError(
                self.field, f"{self.field} {shown} is out of bounds: must be {self.describe()}"
            )
        return value


#: Higher runs first.
PRIORITY = Bound("priority", -1_000_000_000, 1_000_000_000, integer=True)
#: Not before now + this; ten years at most.
DELAY_SECONDS = Bound("delay_seconds", 0, 10 * 366 * 86_400)
#: Attempts of one job (runs after a worker crash count too); as ``JOB_MAX_ATTEMPTS``.
MAX_ATTEMPTS = Bound("max_attempts", 1, 1000, integer=True)


def check_enqueue(*, priority: int, delay_seconds: float, max_attempts: int | None) -> None:
    """Check the numbers of one enqueue request (``max_attempts`` None: the default)."""
    PRIORITY.check(priority)
    DELAY_SECONDS.check(delay_seconds)
    if max_attempts is not None:
        MAX_ATTEMPTS.check(max_attempts)

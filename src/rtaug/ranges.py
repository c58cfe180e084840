"""The values a numeric setting may take, declared once beside its field.

A config dataclass declares a numeric field as `ranged(RULE, default)` and calls
`check_ranges(self)` in its `__post_init__`. The same declaration is read by the experiment
config (`rtaug run key=value`, refused with the key's path) and by the command line's request
checker (`rtaug CMD --flag VALUE`, refused with the flag), so a field's range is written in
one place whichever way it is set.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

_KEY = "range"


@dataclass(frozen=True)
class Range:
    """An interval; `None` leaves a side unbounded. `note` says why, where the bound is not obvious."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    note: str = ""

    def __contains__(self, value) -> bool:
        if isinstance(value, float) and math.isnan(value):  # in no interval
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"greater than {_number(self.low)}" if self.open_low else f"at least {_number(self.low)}"
        if self.low is None:
            return f"less than {_number(self.high)}" if self.open_high else f"at most {_number(self.high)}"
        return (f"in {'(' if self.open_low else '['}{_number(self.low)}, "
                f"{_number(self.high)}{')' if self.open_high else ']'}")

    def problem(self, value) -> str | None:
        """What is wrong with `value` (each item of a list), or None."""
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and v not in self:
                return f"must be {self}" + (f" ({self.note})" if self.note else "")
        return None


def _number(x) -> str:
    # 2^32, not 4294967296: a bound that is a power of two reads as one
    if isinstance(x, int) and x >= 2**16 and x & (x - 1) == 0:
        return f"2^{x.bit_length() - 1}"
    return f"{x:g}" if isinstance(x, float) else str(x)


COUNT = Range(1)  # steps, episodes, trajectories, batch sizes, layers: at least one
NONNEGATIVE = Range(0)
POSITIVE = Range(0, open_low=True)  # learning rates, clip norms
FRACTION = Range(0, 1)  # probabilities, discounts, fractions
OPEN_FRACTION = Range(0, 1, open_low=True, open_high=True)  # IQL's expectile: 0 and 1 are degenerate
UNIT_RATE = Range(0, 1, open_low=True)  # a target network's update rate τ: 0 never moves it
QUANTILE = Range(0, 1, open_low=True, note="1 = the maximum")  # a quantile that sets a threshold α
# JAX keys its generators by a seed's low 32 bits (jax.random.PRNGKey: 2^32 and 0 give one key,
# and -1 the key of 2^32 − 1), and numpy refuses negative seeds: [0, 2^32) is every distinct run.
SEED = Range(0, 2**32, open_high=True, note="JAX's generators use a seed's low 32 bits")


def ranged(rule: Range, default=dataclasses.MISSING, **kwargs):
    """A dataclass field whose values (each item, for a list) must lie in `rule`; `None` always
    passes (a setting left unset). `kwargs` as dataclasses.field's (default_factory)."""
    return dataclasses.field(default=default, metadata={_KEY: rule}, **kwargs)


def range_of(cls, name: str) -> Range | None:
    """The declared range of field `name` of dataclass `cls`, or None."""
    return next((f.metadata.get(_KEY) for f in dataclasses.fields(cls) if f.name == name), None)


def field_problem(cls, name: str, value) -> str | None:
    """What is wrong with `value` for field `name` of `cls`, or None."""
    rule = range_of(cls, name)
    return rule.problem(value) if rule is not None else None


def check_ranges(obj) -> None:
    """ValueError naming the first field of `obj` outside its declared range."""
    for f in dataclasses.fields(obj):
        problem = field_problem(type(obj), f.name, getattr(obj, f.name))
        if problem:
            raise ValueError(f"{type(obj).__name__}.{f.name} {problem}, got {getattr(obj, f.name)!r}")


__all__ = ["COUNT", "FRACTION", "NONNEGATIVE", "OPEN_FRACTION", "POSITIVE", "QUANTILE", "SEED", "UNIT_RATE",
           "Range", "check_ranges",
           "field_problem", "range_of", "ranged"]

"""Progress of long work, one way for every command.

On a terminal a long loop shows a tqdm bar. With `--no-progress` (or in a log file, a Ray worker,
CI) a bar is noise, but silence is worse: a collection that prints nothing for minutes looks
hung. So `progress_bar(..., progress=False)` returns a `LogProgress` with the same methods the
loops call, which prints one line when the work starts, a line at most once a minute while it
runs, and one line with the rate when it ends.

Rates are always "units per second of this loop": for a policy trained on several seeds at once
the unit is an update of every seed, so the figure is updates per second per seed, the same in
the bar, the log line, metrics.csv and summary.json.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

LOG_EVERY_S = 60.0  # a running stage's log line at most this often


def rate_text(n: float, seconds: float, unit: str) -> str:
    """'1234 steps/s' with as many digits as the rate needs."""
    if seconds <= 0 or n <= 0:
        return f"- {unit}/s"
    r = n / seconds
    return f"{r:.3g} {unit}/s" if r < 100 else f"{r:.0f} {unit}/s"


class LogProgress:
    """What a tqdm bar does, as log lines (a line per stage, not per step). On stderr, where the
    bar would be: a command whose stdout is its result (`rtaug audit` prints JSON) stays pipeable."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int = 0, stream=None,
                 every_s: float = LOG_EVERY_S, iterable=None):
        if total is None and iterable is not None:
            total = len(iterable)
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self._iterable = iterable
        self._start_n, self._stream, self._every = initial, stream, every_s
        self._postfix = ""
        self._t0 = self._last = time.perf_counter()
        self._closed = False
        of = f" of {total}" if total is not None else ""
        self._write(f"[{desc}] continuing at {initial}{of} {unit}" if initial
                    else f"[{desc}] started: {total if total is not None else 'an unknown number of'} {unit}")

    def _write(self, line: str) -> None:
        print(line, file=self._stream or sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._last >= self._every and not (self.total is not None and self.n >= self.total):
            self._last = now
            of = f"/{self.total}" if self.total is not None else ""
            self._write(f"[{self.desc}] {self.n}{of} {self.unit}, "
                        f"{rate_text(self.n - self._start_n, now - self._t0, self.unit)}{self._postfix}")

    def set_postfix(self, values=None, refresh: bool = True, **kw) -> None:
        values = {**(values or {}), **kw}
        self._postfix = "".join(f", {k} {v}" for k, v in values.items())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        dt = time.perf_counter() - self._t0
        self._write(f"[{self.desc}] done: {self.n} {self.unit} in {dt:.1f} s, "
                    f"{rate_text(self.n - self._start_n, dt, self.unit)}{self._postfix}")

    def __iter__(self):
        # tqdm's iterator form, for `for x in progress_bar(iterable=...)`
        try:
            for x in self._iterable:
                yield x
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", progress: bool | None = True,
                 initial: int = 0, iterable=None, **tqdm_kw):
    """A tqdm bar when `progress`, a LogProgress with the same methods when False, and nothing
    at all when None: a step inside a larger logged stage (an evaluation every 1,000 updates of a
    policy's training) would otherwise log twice per evaluation."""
    if progress is None:
        return tqdm(iterable, total=total, disable=True)
    if progress:
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, mininterval=0.5,
                    dynamic_ncols=True, **tqdm_kw)
    return LogProgress(total, desc, unit, initial, iterable=iterable)

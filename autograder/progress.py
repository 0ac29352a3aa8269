"""What ``grade`` says while a class is graded: done/total, failures so far, time left.

On a terminal a tqdm bar sits below the per-submission lines; elsewhere (a log file, a cron
job, a notebook cell) each line ends with the same figures in brackets, so a long batch is
never silent and a log can be followed with ``tail -f``.
"""

from __future__ import annotations

import time
from typing import TextIO


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Counts submissions as they finish and reports each one with the batch's progress.

    Parameters
    ----------
    total : int
        Submissions to grade in this batch.
    out : text stream
        Where the lines go; a bar is added when it is a terminal.
    """

    def __init__(self, total: int, out: TextIO, *, clock=time.monotonic):
        self.total, self.done, self.failed = total, 0, 0
        self.out, self.clock = out, clock
        self.started = clock()
        self.bar = None
        if total and getattr(out, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=out, unit="submission", dynamic_ncols=True,
                            leave=False)

    def status(self) -> str:
        """``3/40, 1 failed, about 2 min left`` (the estimate once one submission is done)."""
        text = f"{self.done}/{self.total}"
        if self.failed:
            text += f", {self.failed} failed"
        left = self.total - self.done
        if self.done and left:
            per_submission = (self.clock() - self.started) / self.done  # parallelism included
            text += f", about {_duration(per_submission * left)} left"
        return text

    def finished(self, line: str, *, failed: bool = False, stream: TextIO | None = None) -> None:
        """One submission is done: write ``line`` (to ``stream``, default ``out``)."""
        self.done += 1
        self.failed += failed
        stream = stream or self.out
        if self.bar is not None:
            self.bar.write(line, file=stream)
            self.bar.set_postfix_str(f"{self.failed} failed" if self.failed else "")
            self.bar.update(1)
        else:
            print(f"{line}  [{self.status()}]", file=stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

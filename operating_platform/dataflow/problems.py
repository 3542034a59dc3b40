"""Counting rejected input without flooding the log.

A node that receives a stream of malformed messages (30 per second per camera)
must say so clearly once, keep counting, and remind now and then — never crash
and never drown the operator's log.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable

REMIND_EVERY = 1000
FIRST_LOGGED = 3


class ProblemLog:
    """Counts problems per source; logs the first few of each and then every REMIND_EVERY-th."""

    def __init__(self, node: str, log: Callable[[str], None] | None = None):
        self.node = node
        self.counts: Counter[str] = Counter()
        self._log = log or logging.getLogger(f"operating_platform.{node}").warning

    def report(self, source: str, reason: object) -> None:
        self.counts[source] += 1
        n = self.counts[source]
        if n <= FIRST_LOGGED or n % REMIND_EVERY == 0:
            self._log(f"[{self.node}] rejected {source} #{n}: {reason}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

"""Exponential backoff with full jitter, and ``Retry-After`` parsing."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Backoff:
    """Delay before reconnect attempt ``attempt`` (0-based): uniform in
    ``[0, min(maximum, initial * factor**attempt)]`` ("full jitter"), so that many clients cut at
    once spread their reconnects instead of arriving together."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum) or self.factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")

    def ceiling(self, attempt: int) -> float:
        # Capped before exponentiation overflows.
        if attempt >= 64:
            return self.maximum
        return min(self.maximum, self.initial * self.factor ** max(0, attempt))

    def delay(self, attempt: int, retry_after: Optional[float] = None) -> float:
        """The jittered delay; with a server ``Retry-After``, at least that long (plus jitter,
        so that clients told the same value do not return in one burst)."""
        d = self.rng.uniform(0.0, self.ceiling(attempt))
        if retry_after is not None and retry_after > 0:
            return retry_after + d
        return d


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent or
    unreadable. Bounded to one hour."""
    if value is None:
        return None
    v = value.strip()
    if not v:
        return None
    if v.isdigit():
        return min(float(v), 3600.0)
    try:
        when = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    secs = when.timestamp() - (time.time() if now is None else now)
    return min(max(secs, 0.0), 3600.0)

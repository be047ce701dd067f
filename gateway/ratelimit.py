"""Token-bucket rate limits per key (user id, client IP).

Buckets live in each gateway process: with N gateway processes a client gets at most N times the rate.
That is deliberate: a shared store on the hot path would be the first thing to fall over at a deadline.
"""
from __future__ import annotations

import threading
import time


class TokenBuckets:
    def __init__(self, rate: float, burst: int, *, max_keys: int = 200_000):
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token; returns 0 when allowed, else the seconds until a token is available."""
        moment = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), moment))
            tokens = min(float(self.burst), tokens + (moment - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, moment)
                if len(self._buckets) > self.max_keys:
                    self._evict(moment)
                return 0.0
            self._buckets[key] = (tokens, moment)
            return (1.0 - tokens) / self.rate

    def _evict(self, moment: float) -> None:
        # Buckets that have refilled completely carry no information: drop them.
        full = [k for k, (t, last) in self._buckets.items() if t + (moment - last) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]

"""Per-key token bucket (pure; the caller passes `now` in monotonic seconds)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBuckets:
    rate: float
    burst: float
    _state: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, key: str, now: float) -> float:
        """0 when allowed; otherwise the seconds to wait before a token is available."""
        tokens, last = self._state.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._state[key] = (tokens - 1, now)
            return 0.0
        self._state[key] = (tokens, now)
        return (1 - tokens) / self.rate

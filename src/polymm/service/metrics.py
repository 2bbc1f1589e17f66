"""Rolling latency percentiles: a fixed ring of the most recent samples, sorted only when asked."""

from __future__ import annotations

from array import array


class LatencyWindow:
    __slots__ = ("_i", "_n", "_ring", "count")

    def __init__(self, size: int = 16384) -> None:
        self._ring = array("q", bytes(8 * size))
        self._n = size
        self._i = 0
        self.count = 0

    def add(self, value_ns: int) -> None:
        self._ring[self._i] = value_ns
        self._i = (self._i + 1) % self._n
        self.count += 1

    def percentiles_us(self, *qs: float) -> tuple[float, ...]:
        """Percentiles (0-100) over the window, in microseconds; NaN when empty."""
        filled = min(self.count, self._n)
        if not filled:
            return tuple(float("nan") for _ in qs)
        data = sorted(self._ring[:filled])
        return tuple(data[min(filled - 1, int(q / 100 * filled))] / 1000 for q in qs)

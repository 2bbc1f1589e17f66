"""Order-path latency: how long a post, a cancel and the venue's answers take.

Feed latency is already in the data (`recv_ts` is when Amsterdam received each message), so the
backtest runs on the receive clock and only the order path is modelled. One round trip is drawn
per request and split evenly: the request reaches the venue after RTT/2 and the answer (ack,
cancel confirmation, fill notice) comes back after another RTT/2. On the receive clock, what
happened at the venue at time X shows up in the recorded feed at X + RTT/2 (the feed comes back
over the same path), so an order sent at t takes part in recorded events from t + RTT on, a
cancel sent at t stops fills from events at t + RTT on, and fills in between still happen, as live.

Sources of RTTs (`--latency`):
- `constant:45` (ms; the default, the seed's 40-50 ms Amsterdam -> Polymarket RTT);
- `journal:<dir or csv>` the trading-executor's CSV journal of a live run: `rtt_us=` on each `ack`
  line (post round trips) and `cancel_sent` -> `canceled` delays (cancel round trips);
- `file:<path>` one RTT in milliseconds per line;
- `replay:<dir or csv>` the journal's RTTs where they happened: a request sent at t takes the RTT
  of the live request sent nearest to t, so a backtest of the very session the journal comes
  from sees the same slow posts where live did (used by the fidelity run).
Draws are from a seeded generator, so a run is reproducible.
"""

from __future__ import annotations

import bisect
import csv
import random
import re
from dataclasses import dataclass
from pathlib import Path

from polymm.backtest.errors import BacktestInputError

DEFAULT_RTT_MS = 45.0
_RTT = re.compile(r"rtt_us=(\d+)")


@dataclass
class LatencyModel:
    post_rtt_ms: list[float]
    cancel_rtt_ms: list[float]
    source: str
    seed: int = 0
    post_at: list[int] | None = None  # replay: send time of each post_rtt_ms entry, sorted
    cancel_at: list[int] | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._post_const = self.post_rtt_ms[0] if len(self.post_rtt_ms) == 1 else None
        self._cancel_const = self.cancel_rtt_ms[0] if len(self.cancel_rtt_ms) == 1 else None

    def post_rtt_ns(self, now_ns: int = 0) -> int:
        if self.post_at is not None:
            return int(self.post_rtt_ms[_nearest(self.post_at, now_ns)] * 1e6)
        ms = self._post_const if self._post_const is not None else self._rng.choice(self.post_rtt_ms)
        return int(ms * 1e6)

    def cancel_rtt_ns(self, now_ns: int = 0) -> int:
        if self.cancel_at is not None:
            return int(self.cancel_rtt_ms[_nearest(self.cancel_at, now_ns)] * 1e6)
        ms = self._cancel_const if self._cancel_const is not None else self._rng.choice(self.cancel_rtt_ms)
        return int(ms * 1e6)

    def describe(self) -> dict[str, object]:
        def stats(xs: list[float]) -> dict[str, float]:
            s = sorted(xs)
            return {"n": len(s), "p50_ms": s[len(s) // 2], "p99_ms": s[min(len(s) - 1, int(len(s) * 0.99))]}

        return {"source": self.source, "post": stats(self.post_rtt_ms), "cancel": stats(self.cancel_rtt_ms)}


def parse_latency(spec: str, seed: int = 0) -> LatencyModel:
    kind, _, arg = spec.partition(":")
    if kind == "constant":
        try:
            ms = float(arg or DEFAULT_RTT_MS)
        except ValueError:
            raise BacktestInputError(
                f"--latency {spec!r}: constant needs milliseconds, e.g. constant:45"
            ) from None
        if not 0 <= ms < 60_000:
            raise BacktestInputError(f"--latency {spec!r}: {ms} ms is out of range")
        return LatencyModel([ms], [ms], f"constant {ms:g} ms RTT", seed)
    if kind == "journal":
        post, cancel = from_journal(Path(arg))
        return LatencyModel(post, cancel or post, f"executor journal {arg}", seed)
    if kind == "replay":
        timed: dict[str, list[tuple[int, float]]] = {}
        from_journal(Path(arg), timed)
        post, cancel = sorted(timed["post"]), sorted(timed["cancel"]) or sorted(timed["post"])
        return LatencyModel(
            [r for _, r in post],
            [r for _, r in cancel],
            f"executor journal {arg}, by time",
            seed,
            post_at=[t for t, _ in post],
            cancel_at=[t for t, _ in cancel],
        )
    if kind == "file":
        values = from_file(Path(arg))
        return LatencyModel(values, values, f"file {arg}", seed)
    raise BacktestInputError(
        f"--latency {spec!r}: use constant:<ms>, journal:<path>, replay:<path> or file:<path>"
    )


def journal_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(path.glob("*.csv"))
    return [path]


def _nearest(times: list[int], t: int) -> int:
    i = bisect.bisect_left(times, t)
    if i == len(times) or (i > 0 and t - times[i - 1] <= times[i] - t):
        return max(0, i - 1)
    return i


def from_journal(
    path: Path, timed: dict[str, list[tuple[int, float]]] | None = None
) -> tuple[list[float], list[float]]:
    """(post RTTs, cancel RTTs) in ms from the executor's journal (a directory or one CSV);
    `timed` gets them with the time each request was sent."""
    files = journal_files(path)
    if not files or not all(f.is_file() for f in files):
        raise BacktestInputError(f"--latency journal:{path}: no executor journal CSV there")
    post: list[float] = []
    cancel: list[float] = []
    sent: dict[str, int] = {}
    posted: list[tuple[int, float]] = []
    canceled: list[tuple[int, float]] = []
    for f in files:
        try:
            with f.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    event = row.get("event", "")
                    if event == "ack":
                        m = _RTT.search(row.get("detail") or "")
                        if m:
                            post.append(int(m.group(1)) / 1000.0)
                            posted.append((int(row["ts_ns"]) - int(m.group(1)) * 1000, post[-1]))
                    elif event == "cancel_sent" and row.get("order_id"):
                        sent[row["order_id"]] = int(row["ts_ns"])
                    elif event == "canceled" and row.get("order_id") in sent:
                        t_sent = sent.pop(row["order_id"])
                        cancel.append((int(row["ts_ns"]) - t_sent) / 1e6)
                        canceled.append((t_sent, cancel[-1]))
        except (OSError, ValueError, csv.Error) as exc:
            raise BacktestInputError(f"--latency journal: {f}: unreadable ({exc})") from None
    if not post:
        raise BacktestInputError(f"--latency journal:{path}: no ack lines with rtt_us (DRY_RUN journal?)")
    if timed is not None:
        timed["post"], timed["cancel"] = posted, canceled
    return post, cancel


def from_file(path: Path) -> list[float]:
    try:
        lines = path.read_text(encoding="utf-8").split()
    except OSError as exc:
        raise BacktestInputError(f"--latency file:{path}: {exc.strerror}") from None
    try:
        values = [float(x) for x in lines]
    except ValueError:
        raise BacktestInputError(f"--latency file:{path}: expected one RTT in ms per line") from None
    if not values or min(values) < 0:
        raise BacktestInputError(f"--latency file:{path}: no non-negative RTTs")
    return values

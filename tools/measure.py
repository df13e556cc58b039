"""The measurements every tool shares: the percentile, CPU seconds, resident memory (psutil)."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] of ``values`` (NaN when empty)."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (all its threads), 0 when unknown or gone."""
    if not pid:
        return 0.0
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except Exception:  # the process may be gone, or psutil missing: CPU figures are optional
        return 0.0


def system_busy_seconds() -> float:
    """CPU seconds all processes on the machine have spent busy (0 without psutil)."""
    try:
        import psutil

        t = psutil.cpu_times()
        return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))
    except Exception:  # optional figure
        return 0.0


def rss_bytes(pid: int) -> int:
    """Resident set size of a process in bytes."""
    import psutil

    return int(psutil.Process(pid).memory_info().rss)

"""One wrk run against a loopback URL, read through a Lua ``done`` hook; installing wrk when it is missing.

wrk prints rounded, unit-suffixed numbers; its Lua ``done(summary, latency, requests)`` hook sees
the exact histogram, so each run writes one JSON line (``WRK_JSON {...}``) with the request count,
duration, error counts and the latency percentiles in microseconds.  wrk is a closed loop: each
connection sends its next request only after the previous answer, so a server that stalls is
simply sent less — the fixed-rate probe (``bench.probe``) shows what that hides.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass

from stack.process import SetupFailed

_MARKER = "WRK_JSON "
_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, '
    .. '"timeout": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed nothing to read; the message says which."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    errors: dict[str, int]    # connect, read, write, status (HTTP >= 400), timeout

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "error_count": self.error_count}


def parse(output: str) -> WrkResult:
    """The result of one run from wrk's output (the line the Lua hook wrote)."""
    line = next((ln for ln in output.splitlines() if ln.startswith(_MARKER)), None)
    if line is None:
        raise WrkError(f"wrk printed no result line: {output.strip()[-300:]!r}")
    raw = json.loads(line[len(_MARKER):])
    seconds = raw["duration_us"] / 1e6
    errors = {k: int(raw[k]) for k in ("connect", "read", "write", "status", "timeout")}
    ok = raw["requests"] > 0
    return WrkResult(
        requests=int(raw["requests"]), seconds=round(seconds, 3),
        requests_per_s=round(raw["requests"] / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=raw["p50"] / 1000 if ok else 0.0, p90_ms=raw["p90"] / 1000 if ok else 0.0,
        p99_ms=raw["p99"] / 1000 if ok else 0.0, max_ms=raw["max"] / 1000 if ok else 0.0,
        mean_ms=round(raw["mean"] / 1000, 3) if ok else 0.0, errors=errors)


def pin(cpu: int | None) -> list[str]:
    """``taskset -c CPU`` when there is such a CPU and taskset exists; else nothing."""
    if cpu is None or shutil.which("taskset") is None or cpu >= (os.cpu_count() or 1):
        return []
    return ["taskset", "-c", str(cpu)]


def run(url: str, *, seconds: float, connections: int, cpu: int | None = None, timeout_s: float | None = None,
        threads: int = 1) -> WrkResult:
    """One wrk run of ``seconds`` against ``url`` with ``connections`` kept-alive connections."""
    if not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise WrkError(f"refusing to load a non-loopback address: {url}")
    if shutil.which("wrk") is None:
        raise WrkError("wrk is not installed")
    timeout_s = timeout_s if timeout_s is not None else min(max(2.0, seconds + 2.0), 30.0)
    duration = max(1, round(seconds))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-wrk-") as script:
        script.write(_LUA)
        script.flush()
        argv = [*pin(cpu), "wrk", f"-t{max(1, min(threads, connections))}", f"-c{connections}", f"-d{duration}s",
                f"--timeout={timeout_s:g}s", "-s", script.name, url]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + timeout_s + 30,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise WrkError(f"wrk did not finish: {' '.join(argv)}") from None
    if done.returncode != 0:
        raise WrkError(f"wrk exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}")
    return parse(done.stdout)


def ensure_installed() -> None:
    """Install wrk from Debian's packages if it is missing (as root, or with password-less sudo)."""
    if shutil.which("wrk"):
        return
    from stack.services import apt_install
    try:
        apt_install("wrk")
    except SetupFailed as exc:
        raise WrkError(f"wrk is not installed and could not be installed: {str(exc).splitlines()[0]}") from None
    if shutil.which("wrk") is None:
        raise WrkError("wrk is not installed and could not be installed: apt-get finished but no wrk is on PATH")


"""Starting, finding and stopping the stack's server processes.

Each process the stack starts gets ``.stack/<name>/pid`` holding its pid and
the executable it ran, so ``down`` stops only what ``up`` started, and a pid
reused by an unrelated program is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".stack"


@dataclass(frozen=True, slots=True)
class Running:
    pid: int
    executable: str


def _proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def read_pid(pid_file: Path) -> Running | None:
    """The process recorded in ``pid_file``, if it is still the one we started."""
    try:
        pid_text, executable = pid_file.read_text().split("\n", 1)
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    executable = executable.strip()
    if not alive(pid):
        return None
    # Some servers rewrite their title ("redis-server 127.0.0.1:6379"): compare the program only.
    # An empty command line is a process between exec steps (the java launcher re-executes
    # itself at start): still ours.
    cmdline = _proc_cmdline(pid)
    if cmdline and Path(cmdline[0].split(" ", 1)[0]).name != Path(executable).name:
        return None
    return Running(pid, executable)


def spawn(argv: list[str], *, log_file: Path, pid_file: Path, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> Running:
    """Start ``argv`` detached (own session), output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=cwd, env=env, start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n{argv[0]}\n")
    return Running(proc.pid, argv[0])


def _state(pid: int) -> str:
    """The process state letter from /proc ("R", "S", "Z", ...), "X" when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def alive(pid: int) -> bool:
    return _state(pid) not in ("Z", "X")


def stop(pid_file: Path, *, grace_s: float = 15.0) -> int | None:
    """SIGTERM the recorded process (its whole session), SIGKILL after ``grace_s``."""
    running = read_pid(pid_file)
    pid_file.unlink(missing_ok=True)
    if running is None:
        return None
    try:
        os.killpg(running.pid, signal.SIGTERM)
    except ProcessLookupError:
        return running.pid
    deadline = time.monotonic() + grace_s
    while alive(running.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(running.pid):
        try:
            os.killpg(running.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while alive(running.pid):
            time.sleep(0.05)
    return running.pid


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def run(argv: list[str], *, what: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 1200.0) -> str:
    """Run a setup command to completion; raise SetupFailed with its output on failure."""
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except FileNotFoundError as exc:
        raise SetupFailed(f"{what}: {argv[0]} is not installed ({exc})") from None
    except subprocess.TimeoutExpired:
        raise SetupFailed(f"{what}: `{' '.join(argv)}` did not finish in {timeout:.0f} s") from None
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise SetupFailed(f"{what}: `{' '.join(argv)}` exited {done.returncode}\n{output}")
    return done.stdout


class SetupFailed(Exception):
    """A stack step failed; the message says which service, where, and why."""

"""HAProxy as the simulated hosts' balancer (``python -m stack hosts up --balancer haproxy``).

Rules of this file:
- ``render_haproxy`` is pure (``deploy/haproxy.cfg.template`` in, a config out), usable for real
  hosts as well.  Each upstream ``host:port`` becomes a server named ``host_port``.
- The process runs in the foreground of its own session (``haproxy -db``), its pid in
  ``<dir>/pid`` and its output, the JSON access log included, in ``<dir>/haproxy.log``.
- Hosts are taken out and put back through the admin socket (``set server ... state maint`` and
  ``state ready``), never by a reload: nothing in flight is touched.
- Every command and wait has a deadline; a failure raises ``SetupFailed`` naming what failed.
"""

from __future__ import annotations

import re
import shutil
import socket
import time
from collections.abc import Collection
from pathlib import Path

from stack.process import ROOT, SetupFailed, read_pid, run, spawn, stop, tail
from stack.services import _policy_rc_denies_autostart, apt_install

TEMPLATE = ROOT / "deploy" / "haproxy.cfg.template"
BACKEND = "asyncstack"
STEP_TIMEOUT_S = 15.0


def server_name(upstream: str) -> str:
    return upstream.replace(":", "_")


def render_haproxy(upstreams: list[str], *, listen: str, bind: str, state: str, template: Path = TEMPLATE,
                   down: Collection[str] = ()) -> str:
    """The template with each ``{{name}}`` filled in; ``upstreams`` are ``host:port`` IP literals, those
    also in ``down`` start in maintenance (sent nothing)."""
    servers = "\n".join(f"    server {server_name(u)} {u}{' disabled' if u in down else ''}" for u in upstreams)
    values = {"servers": servers, "listen": listen, "bind": bind, "state": state}
    text = template.read_text()
    missing = sorted(set(re.findall(r"\{\{(\w+)\}\}", text)) - set(values))
    if missing:
        raise ValueError(f"{template}: no value for {', '.join(missing)}")
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)


class HAProxy:
    """One HAProxy process of ours, its files in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.conf = directory / "haproxy.cfg"
        self.pid_file = directory / "pid"
        self.log_file = directory / "haproxy.log"
        self.socket = directory / "admin.sock"

    def pid(self) -> int | None:
        running = read_pid(self.pid_file)
        return running.pid if running else None

    def start(self, upstreams: list[str], *, listen: str, bind: str) -> None:
        """Write the config and start HAProxy unless it runs with that config (a running one keeps its
        state: servers are changed through the admin socket); one with another config is restarted."""
        if shutil.which("haproxy") is None:
            _policy_rc_denies_autostart()
            apt_install("haproxy")
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = render_haproxy(upstreams, listen=listen, bind=bind, state=str(self.dir))
        if self.pid() is not None and (not self.conf.is_file() or self.conf.read_text() != conf):
            self.stop()
        self.conf.write_text(conf)
        run(["haproxy", "-c", "-q", "-f", str(self.conf)], what=f"checking {self.conf}", timeout=STEP_TIMEOUT_S)
        if self.pid() is None:
            spawn(["haproxy", "-db", "-f", str(self.conf)], log_file=self.log_file, pid_file=self.pid_file,
                  cwd=self.dir)
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not self.socket.exists() or not self._answers():
            if self.pid() is None or time.monotonic() > deadline:
                raise SetupFailed(f"haproxy did not come up with {self.conf}.\n"
                                  f"Last lines of {self.log_file}:\n{tail(self.log_file)}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            self.command("show info")
        except (OSError, SetupFailed):
            return False
        return True

    def stop(self) -> int | None:
        return stop(self.pid_file, grace_s=5.0)

    def command(self, line: str) -> str:
        """One admin-socket command; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(STEP_TIMEOUT_S)
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        answer = b"".join(chunks).decode(errors="replace")
        if answer.lstrip().startswith(("No such", "Unknown", "Require")):
            raise SetupFailed(f"haproxy: `{line}` answered {answer.strip()!r}")
        return answer

    def set_state(self, upstream: str, state: str) -> None:
        """``ready``, ``drain`` or ``maint`` for one server."""
        self.command(f"set server {BACKEND}/{server_name(upstream)} state {state}")

    def set_checks(self, upstream: str, *, enabled: bool) -> None:
        """Turn one server's health checks on or off."""
        self.command(f"{'enable' if enabled else 'disable'} health {BACKEND}/{server_name(upstream)}")

    def server_status(self, upstream: str) -> str:
        """The server's status as the stats show it: UP, DOWN, MAINT, ... ("" if unknown)."""
        name = server_name(upstream)
        for row in self.command("show stat -1 4 -1").splitlines():
            fields = row.split(",")
            if len(fields) > 17 and fields[0] == BACKEND and fields[1] == name:
                return fields[17]
        return ""

    def wait_status(self, upstream: str, prefix: str, within_s: float = STEP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + within_s
        while not (status := self.server_status(upstream)).startswith(prefix):
            if time.monotonic() > deadline:
                raise SetupFailed(f"haproxy: server {upstream} is {status or 'unknown'}, not {prefix}, "
                                  f"{within_s:.0f} s on")
            time.sleep(0.05)

"""Three simulated hosts of two workers behind nginx, for this folder; removed again whatever happens."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stack.hosts import HAPROXY, NFT_TABLE, NGINX_CONF, NGINX_DIR, NGINX_PORT, PREFIX, SUBNET, Host
from tests.conftest import run_stack

HOSTS = [Host(i) for i in range(3)]


def leftovers() -> list[str]:
    """Whatever of ours still exists: namespaces, links, the nftables table, processes."""
    found = [f"namespace {n}" for n in _out("ip", "netns", "list").split() if n.startswith(PREFIX)]
    found += [f"link {n}" for n in re.findall(r"^\d+: ([^:@]+)", _out("ip", "-o", "link", "show"), re.M)
              if n.startswith(PREFIX)]
    found += [f"nftables table {NFT_TABLE}"] if NFT_TABLE in _out("nft", "list", "tables", "ip").split() else []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(NGINX_CONF) in text or str(HAPROXY.conf) in text or f"--host {SUBNET}." in text:
            found.append(f"process {cmdline.parent.name}: {text[:100]}")
    return found


def _out(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False).stdout


def hosts_cmd(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_stack("hosts", *args, timeout=timeout, env=env)


def hosts_running(env: dict[str, str] | None = None, balancer: str = "nginx") -> Iterator[list[Host]]:
    """``hosts up --hosts 3 --workers 2 --balancer ...`` (with ``env`` in the hosts' environment, hosts of
    another environment removed first); afterwards ``hosts down``, and nothing of ours is left."""
    try:
        if env:
            hosts_cmd("down")
        done = hosts_cmd("up", "--hosts", "3", "--workers", "2", "--balancer", balancer, env=env)
        assert done.returncode == 0, f"hosts up failed:\n{done.stdout}\n{done.stderr}"
        yield HOSTS
    finally:
        done = hosts_cmd("down")
        assert done.returncode == 0, f"hosts down failed:\n{done.stdout}\n{done.stderr}"
        assert leftovers() == []


@pytest.fixture(scope="module")
def hosts(stack: None) -> Iterator[list[Host]]:
    yield from hosts_running()


def request(method: str, path: str, headers: dict[str, str] | None = None, *, address: str = "127.0.0.1",
            port: int = NGINX_PORT, timeout: float = 15) -> tuple[int, bytes]:
    """One request over its own connection (http.client: no proxy from the environment)."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def access_lines(host: Host, text: str, *, expect: int = 1, within_s: float = 3) -> list[dict[str, Any]]:
    """The host's access-log lines containing ``text``, once at least ``expect`` of them were written."""
    deadline = time.monotonic() + within_s
    while True:
        lines = [json.loads(ln) for ln in host.log_file.read_text().splitlines() if text in ln and ln.startswith("{")]
        if len(lines) >= expect or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def nginx_lines(text: str, *, expect: int = 1, within_s: float = 3) -> list[dict[str, Any]]:
    """nginx's access-log lines (which upstreams were tried, their statuses) containing ``text``."""
    log = NGINX_DIR / "access.log"
    deadline = time.monotonic() + within_s
    while True:
        lines = [json.loads(ln) for ln in log.read_text().splitlines() if text in ln]
        if len(lines) >= expect or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)



def signal_host(host: Host, sig: signal.Signals) -> list[int]:
    pids = [int(p) for p in subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True,
                                           timeout=10, check=True).stdout.split()]
    assert pids, f"no process in {host.netns}"
    for pid in pids:
        os.kill(pid, sig)
    return pids


def kill_host(host: Host) -> None:
    pids = signal_host(host, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(os.path.exists(f"/proc/{p}") and "Z" not in state_of(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def state_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def restore_hosts() -> None:
    done = hosts_cmd("up", "--hosts", "3", "--workers", "2")
    assert done.returncode == 0, f"hosts up (again) failed:\n{done.stdout}\n{done.stderr}"

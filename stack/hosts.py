"""``python -m stack hosts up|down|status|restart --rolling``: the service on simulated hosts, behind a balancer.

Each simulated host is a network namespace running ``python -m app serve`` on an address of its
own; the namespaces hang off one Linux bridge in the root namespace, and nginx (or HAProxy with
``up --balancer haproxy``: stack/haproxy.py), in the root namespace, balances over them
(``deploy/nginx.conf.template``, docs/deploy.md)::

    client -> nginx 127.0.0.1:18080 -> bridge 10.77.0.1 -> asyncstack-h0 10.77.0.11:8888, h1 .12, ...
                                                        <- backends at 10.77.0.1:<port>, DNAT to 127.0.0.1

Rules of this file:

- Everything it creates carries the prefix ``asyncstack-`` (namespaces ``asyncstack-h<i>``, veths
  ``asyncstack-v<i>``, the bridge ``asyncstack-br``) or is the nftables table ``ip asyncstack_hosts``,
  and its files live under ``.stack/hosts/``.  ``down`` finds what to remove by those names, not by
  what this run remembers, so it also clears what a crashed ``up`` left; running it twice is harmless.
- Addresses come from 10.77.0.0/24 and are set only on what this file created: the bridge
  10.77.0.1, host i 10.77.0.(11+i).  No other interface, address or route is touched.
- The stack's servers listen on 127.0.0.1 only; the hosts reach them at the bridge address through
  DNAT (``route_localnet`` set on the bridge alone), so backend traffic crosses the bridge.  A kernel
  without nftables NAT makes ``up`` fail at that step, naming it (there is no forwarder fallback:
  the kernels this runs on have it).
- Every external command and every wait has a deadline; a failed step raises ``SetupFailed`` naming
  it.  Without root or without ``ip`` nothing is changed: the error says so and the exit is 1.
- ``render_nginx`` is pure (a template in, a config out), usable for real hosts as well.
- ``restart --rolling`` takes one host at a time out of the balancer (nginx: ``down`` in its config,
  a graceful reload; HAProxy: ``drain`` with its checks off, through the admin socket), lets its
  server drain and exit on SIGTERM, starts it again as ``up`` does, and puts it back once its
  ``/readyz`` answers 200; each phase is bounded and a failure names the host and phase.
- One balancer at a time, on the same address; ``.stack/hosts/balancer`` names the one ``up`` started.
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from app.settings import REDIS_CLUSTER_PORTS, Settings, load_settings
from stack.haproxy import HAProxy
from stack.process import ROOT, STATE, SetupFailed, alive, read_pid, run, spawn, stop, tail
from stack.services import _policy_rc_denies_autostart, apt_install

PREFIX = "asyncstack-"
BRIDGE = f"{PREFIX}br"
NFT_TABLE = "asyncstack_hosts"
SUBNET = "10.77.0"
BRIDGE_IP = f"{SUBNET}.1"
SERVE_PORT = 8888
NGINX_PORT = 18080                  # below 32768: never in the ephemeral range
DIR = STATE / "hosts"
TEMPLATE = ROOT / "deploy" / "nginx.conf.template"
STEP_TIMEOUT_S = 15.0               # any one command
START_TIMEOUT_S = 60.0              # every host answering /healthz after `up` started them
HOST_GRACE_S = "1"                  # the hosts' server.shutdown_grace_s unless the environment sets one
LOCAL = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class Host:
    index: int

    @property
    def netns(self) -> str:
        return f"{PREFIX}h{self.index}"

    @property
    def veth(self) -> str:
        return f"{PREFIX}v{self.index}"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{11 + self.index}"

    @property
    def upstream(self) -> str:
        """Where the balancer reaches the host's server."""
        return f"{self.address}:{SERVE_PORT}"

    @property
    def dir(self) -> Path:
        return DIR / f"h{self.index}"

    @property
    def pid_file(self) -> Path:
        return self.dir / "pid"

    @property
    def log_file(self) -> Path:
        """The host's stdout and stderr: its access log, one JSON line per request."""
        return self.dir / "serve.log"


# -- the nginx config ------------------------------------------------------------------------------

def render_nginx(upstreams: list[str], *, listen: str, bind: str, state: str, user: str = "www-data",
                 worker_processes: int = 1, template: Path = TEMPLATE, down: Collection[str] = ()) -> str:
    """The template with each ``{{name}}`` filled in; ``upstreams`` are ``host:port`` IP literals, those
    also in ``down`` marked ``down`` (nginx sends them nothing new)."""
    servers = "\n".join(f"        server {u} max_fails=2 fail_timeout=5s{' down' if u in down else ''};"
                        for u in upstreams)
    values = {"servers": servers, "listen": listen, "bind": bind, "state": state, "user": user,
              "worker_processes": str(worker_processes)}
    text = template.read_text()
    missing = sorted(set(re.findall(r"\{\{(\w+)\}\}", text)) - set(values))
    if missing:
        raise ValueError(f"{template}: no value for {', '.join(missing)}")
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)


# -- commands --------------------------------------------------------------------------------------

def _ip(*args: str, what: str) -> str:
    return run(["ip", *args], what=what, timeout=STEP_TIMEOUT_S)


CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21


def _effective_capabilities() -> int:
    status = Path("/proc/self/status").read_text()
    found = re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M)
    return int(found.group(1), 16) if found else 0


def _require_root() -> None:
    """Namespaces, links and nftables need CAP_SYS_ADMIN and CAP_NET_ADMIN: root, with them not dropped."""
    caps = _effective_capabilities()
    if os.geteuid() != 0 or not (caps >> CAP_NET_ADMIN & 1 and caps >> CAP_SYS_ADMIN & 1):
        raise SetupFailed("hosts: network namespaces need root with CAP_SYS_ADMIN and CAP_NET_ADMIN "
                          f"(this process: uid {os.geteuid()}, effective capabilities {caps:#x}): run "
                          "`sudo .venv/bin/python -m stack hosts ...` or as root; nothing was changed")
    if shutil.which("ip") is None:
        raise SetupFailed("hosts: the `ip` command (Debian package iproute2) is not installed; nothing was changed")


def our_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"], what="listing network namespaces", timeout=STEP_TIMEOUT_S)
    return sorted(line.split()[0] for line in out.splitlines() if line.startswith(PREFIX))


def _host_of(netns: str) -> Host:
    """The host a namespace of ours stands for (a name of ours not made by ``up``: index -1)."""
    found = re.fullmatch(rf"{PREFIX}h(\d+)", netns)
    return Host(int(found.group(1)) if found else -1)


def our_links() -> list[str]:
    out = run(["ip", "-o", "link", "show"], what="listing links", timeout=STEP_TIMEOUT_S)
    names = (line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line)
    return sorted(n for n in names if n.startswith(PREFIX))


def _backend_env(settings: Settings) -> tuple[dict[str, str], list[int]]:
    """The hosts' ``ASYNCSTACK_...`` variables pointing local backends at the bridge; the ports to DNAT.

    The Redis Cluster's nodes announce 127.0.0.1: the cluster client takes a loopback address
    announced by a node it reached at the bridge to be the bridge as well (drivers/redis/slots.py).
    """
    env: dict[str, str] = {}
    ports: list[int] = []
    for name, section in (("MYSQL", settings.mysql), ("REDIS", settings.redis), ("MONGO", settings.mongo)):
        if section.host in LOCAL:
            env[f"ASYNCSTACK_{name}__HOST"] = BRIDGE_IP
            ports.append(section.port)
    nodes = [[BRIDGE_IP if h in LOCAL else h, p] for h, p in settings.ignite.nodes]
    env["ASYNCSTACK_IGNITE__NODES"] = json.dumps(nodes)
    ports += [p for h, p in settings.ignite.nodes if h in LOCAL]
    env["ASYNCSTACK_REDIS_CLUSTER__NODES"] = json.dumps(
        [[BRIDGE_IP if h in LOCAL else h, p] for h, p in settings.redis_cluster.nodes])
    if any(h in LOCAL for h, _ in settings.redis_cluster.nodes):
        ports += list(REDIS_CLUSTER_PORTS)      # the seeds, and the nodes the client learns of from them
    shards = []
    for shard in settings.cache.shards:
        host, _, port = shard.rpartition(":")
        local = host in LOCAL
        shards.append(f"{BRIDGE_IP}:{port}" if local else shard)
        ports += [int(port)] if local else []
    env["ASYNCSTACK_CACHE__SHARDS"] = json.dumps(shards)
    env["ASYNCSTACK_SERVER__TRUSTED_PROXIES"] = json.dumps([BRIDGE_IP])
    return env, sorted(set(ports))


PUBLISH_TOKEN_FILE = DIR / "publish_token"


def publish_token(settings: Settings) -> str:
    """The hosts' ``ws.publish_token``: the one configured, else one made once and kept in ``.stack/hosts/``."""
    if settings.ws.publish_token:
        return settings.ws.publish_token
    if not PUBLISH_TOKEN_FILE.is_file():
        PUBLISH_TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
        PUBLISH_TOKEN_FILE.touch(mode=0o600)
        PUBLISH_TOKEN_FILE.write_text(secrets.token_urlsafe(24) + "\n")
    return PUBLISH_TOKEN_FILE.read_text().strip()


def _host_env(settings: Settings) -> tuple[dict[str, str], list[int]]:
    """``_backend_env``, plus what a host behind the balancer needs: a publish token (``POST /publish``
    works through nginx) and a shutdown grace (``/readyz`` says 503 a moment before the listener stops)."""
    env, ports = _backend_env(settings)
    env["ASYNCSTACK_WS__PUBLISH_TOKEN"] = publish_token(settings)
    env["ASYNCSTACK_SERVER__SHUTDOWN_GRACE_S"] = os.environ.get("ASYNCSTACK_SERVER__SHUTDOWN_GRACE_S", HOST_GRACE_S)
    return env, ports


def _network(hosts: list[Host], ports: list[int]) -> None:
    """The bridge, the DNAT to the backends, and each namespace with its veth and address."""
    links = our_links()
    if BRIDGE not in links:
        _ip("link", "add", BRIDGE, "type", "bridge", what="creating the bridge")
    if f" {BRIDGE_IP}/24 " not in _ip("-o", "addr", "show", "dev", BRIDGE, what="reading the bridge's address"):
        _ip("addr", "add", f"{BRIDGE_IP}/24", "dev", BRIDGE, what="addressing the bridge")
    _ip("link", "set", BRIDGE, "up", what="bringing the bridge up")
    Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet").write_text("1\n")
    if shutil.which("nft") is None:
        apt_install("nftables")
    ruleset = DIR / "nat.nft"
    rule = (f"    iifname \"{BRIDGE}\" ip daddr {BRIDGE_IP} tcp dport {{ {', '.join(map(str, ports))} }} "
            f"dnat to 127.0.0.1\n") if ports else ""
    ruleset.write_text(
        f"table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n"      # replaced whole, atomically
        f"table ip {NFT_TABLE} {{\n  chain prerouting {{\n"
        f"    type nat hook prerouting priority dstnat; policy accept;\n{rule}  }}\n}}\n")
    run(["nft", "-f", str(ruleset)], what="DNAT from the bridge to the stack's servers", timeout=STEP_TIMEOUT_S)
    wanted = {h.netns for h in hosts}
    existing = our_namespaces()
    # hosts no longer asked for, or half made by a crash
    stale = [n for n in existing if n not in wanted or not _complete(_host_of(n))]
    _remove_namespaces(stale)
    wanted -= set(existing) - set(stale)
    for h in hosts:
        if h.netns not in wanted:
            continue
        _ip("netns", "add", h.netns, what=f"creating namespace {h.netns}")
        _ip("link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.netns,
            what=f"creating the veth pair of {h.netns}")
        _ip("link", "set", h.veth, "master", BRIDGE, "up", what=f"attaching {h.veth} to the bridge")
        inside = ("netns", "exec", h.netns, "ip")
        _ip(*inside, "addr", "add", f"{h.address}/24", "dev", "eth0", what=f"addressing {h.netns}")
        _ip(*inside, "link", "set", "eth0", "up", what=f"bringing {h.netns}'s eth0 up")
        _ip(*inside, "link", "set", "lo", "up", what=f"bringing {h.netns}'s loopback up")


def _complete(h: Host) -> bool:
    """The namespace has its address on eth0 and its veth peer in the root namespace."""
    try:
        inside = _ip("-n", h.netns, "-o", "addr", "show", "dev", "eth0", what=f"reading {h.netns}'s address")
    except SetupFailed:                         # no eth0 yet
        return False
    return f" {h.address}/24 " in inside and h.veth in our_links()


def _remove_namespaces(names: Collection[str]) -> None:
    """Stop every process inside them, all together (each drains for its grace at the same time, not
    one namespace after another), then delete them (their veth pairs go with them)."""
    inside: dict[str, list[int]] = {}
    for netns in names:
        out = run(["ip", "netns", "pids", netns], what=f"listing {netns}'s processes", timeout=STEP_TIMEOUT_S)
        inside[netns] = [int(p) for p in out.split()]
    _terminate([p for pids in inside.values() for p in pids], grace_s=12.0)   # above shutdown_timeout_s (10 s)
    for netns, pids in inside.items():
        _ip("netns", "del", netns, what=f"removing namespace {netns}")
        print(f"  removed {netns}" + (f" (stopped pids {', '.join(map(str, pids))})" if pids else ""), flush=True)


def _start_host(h: Host, workers: int, env: dict[str, str]) -> bool:
    """Start the host's server unless it runs; whether it was started."""
    if read_pid(h.pid_file) is not None:
        return False
    argv = ["ip", "netns", "exec", h.netns, sys.executable, "-m", "app", "serve",
            "--workers", str(workers), "--host", h.address, "--port", str(SERVE_PORT)]
    running = spawn(argv, log_file=h.log_file, pid_file=h.pid_file, cwd=ROOT, env={**os.environ, **env})
    # `ip netns exec` execs the interpreter in place: the pid is the server's, the program Python
    # once the exec is done (until then, "ip" or an empty command line, the pid file would not match).
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while (_program(running.pid) != Path(sys.executable).name and alive(running.pid)
           and time.monotonic() < deadline):
        time.sleep(0.01)
    h.pid_file.write_text(f"{running.pid}\n{sys.executable}\n")
    return True


def _program(pid: int) -> str:
    try:
        return Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()).name
    except OSError:
        return ""


def _http(address: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def _wait_healthy(hosts: list[Host], path: str = "/healthz") -> None:
    """Every host answers ``path`` with 200 within ``START_TIMEOUT_S``; SetupFailed naming the first that does not."""
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = list(hosts)
    while waiting:
        h = waiting[0]
        if read_pid(h.pid_file) is None:
            raise SetupFailed(f"host {h.netns} ({h.address}): the service exited while starting.\n"
                              f"Last lines of {h.log_file}:\n{tail(h.log_file)}")
        try:
            if _http(h.address, SERVE_PORT, path, 1.0)[0] == 200:
                waiting.pop(0)
                continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SetupFailed(f"host {h.netns} ({h.address}) did not answer {path} with 200 within "
                              f"{START_TIMEOUT_S:.0f} s.\n"
                              f"Last lines of {h.log_file}:\n{tail(h.log_file)}")
        time.sleep(0.1)


# -- nginx -----------------------------------------------------------------------------------------

NGINX_DIR = DIR / "nginx"
NGINX_CONF = DIR / "nginx.conf"


def _nginx_argv(*extra: str) -> list[str]:
    return ["nginx", "-p", f"{NGINX_DIR}/", "-c", str(NGINX_CONF), "-e", str(NGINX_DIR / "error.log"), *extra]


def nginx_pid() -> int | None:
    """nginx's master, if it is the one running our config (never an unrelated nginx)."""
    try:
        pid = int((NGINX_DIR / "nginx.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return None
    return pid if alive(pid) and str(NGINX_CONF) in cmdline else None


def _start_nginx(hosts: list[Host], *, reload: bool, down: Collection[Host] = (), wait_gone: bool = True) -> None:
    """Start nginx, or reload it when its config changed or ``reload`` (a host started again: new
    workers forget the failures they counted, so it is taken back at once).  Hosts in ``down`` are
    marked ``down``; ``wait_gone``: as ``_reload_nginx``."""
    if shutil.which("nginx") is None:
        _policy_rc_denies_autostart()
        apt_install("nginx")
    (NGINX_DIR / "tmp").mkdir(parents=True, exist_ok=True)
    conf = render_nginx([h.upstream for h in hosts], listen=f"127.0.0.1:{NGINX_PORT}",
                        bind=BRIDGE_IP, state=str(NGINX_DIR), user=getpass.getuser(),
                        down={h.upstream for h in down})
    changed = not NGINX_CONF.is_file() or NGINX_CONF.read_text() != conf
    NGINX_CONF.write_text(conf)
    run(_nginx_argv("-t", "-q"), what=f"checking {NGINX_CONF}", timeout=STEP_TIMEOUT_S)
    if nginx_pid() is None:
        run(_nginx_argv(), what="starting nginx", timeout=STEP_TIMEOUT_S)
    elif changed or reload:
        _reload_nginx(wait_gone=wait_gone)
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while True:
        try:
            _http("127.0.0.1", NGINX_PORT, "/healthz", 1.0)
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                log = NGINX_DIR / "error.log"
                raise SetupFailed(f"nginx at 127.0.0.1:{NGINX_PORT} does not answer ({exc}).\n"
                                  f"Last lines of {log}:\n{tail(log)}") from None
            time.sleep(0.1)


def _reload_nginx(*, wait_gone: bool = True) -> None:
    """``nginx -s reload``, then wait (bounded) until the old workers are gone, or with ``wait_gone``
    false only until each is gone or shutting down: it no longer accepts, and finishes what it has
    (a proxied WebSocket keeps an old worker until it closes, so waiting for it to go could take
    the whole bound)."""
    master = nginx_pid()
    old = set(_children(master)) if master else set()
    run(_nginx_argv("-s", "reload"), what="reloading nginx", timeout=STEP_TIMEOUT_S)
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while master and time.monotonic() < deadline:
        left = old & set(_children(master))
        if not left or (not wait_gone and all("shutting down" in _title(pid) for pid in left)):
            return
        time.sleep(0.02)
    if master and old & set(_children(master)) and not wait_gone:
        raise SetupFailed(f"nginx: old workers {sorted(old & set(_children(master)))} still accept "
                          f"{STEP_TIMEOUT_S:.0f} s after the reload.\nLast lines of {NGINX_DIR / 'error.log'}:\n"
                          f"{tail(NGINX_DIR / 'error.log')}")


def _title(pid: int) -> str:
    """A process's command line as ``ps`` shows it (nginx writes its state there), "" when gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _stop_nginx() -> int | None:
    pid = nginx_pid()
    if pid is None:
        return None
    workers = _children(pid)
    _terminate([pid, *workers], grace_s=5.0)
    return pid


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _terminate(pids: list[int], grace_s: float) -> None:
    """SIGTERM each, SIGKILL those still alive after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not any(alive(p) for p in pids):
            return


# -- the commands ----------------------------------------------------------------------------------

# -- the balancer: nginx, or HAProxy -------------------------------------------------------------

BALANCERS = ("nginx", "haproxy")
BALANCER_FILE = DIR / "balancer"
HAPROXY = HAProxy(DIR / "haproxy")


def balancer() -> str:
    """The balancer ``up`` last started (nginx unless it was told otherwise)."""
    try:
        name = BALANCER_FILE.read_text().strip()
    except OSError:
        return "nginx"
    return name if name in BALANCERS else "nginx"


def _start_haproxy(hosts: list[Host]) -> None:
    """Start HAProxy (again, when the host list changed), then wait until it calls every host UP."""
    upstreams = [h.upstream for h in hosts]
    HAPROXY.start(upstreams, listen=f"127.0.0.1:{NGINX_PORT}", bind=BRIDGE_IP)
    for u in upstreams:
        HAPROXY.wait_status(u, "UP")


def up(settings: Settings, count: int, workers: int, using: str | None = None) -> int:
    """Hosts and a balancer; ``using`` None keeps the balancer of the hosts already up (nginx after ``down``)."""
    _require_root()
    using = using or balancer()
    if not 1 <= count <= 200:
        raise SetupFailed(f"hosts: --hosts must be 1..200, not {count}")
    if using not in BALANCERS:
        raise SetupFailed(f"hosts: --balancer must be one of {', '.join(BALANCERS)}, not {using}")
    DIR.mkdir(parents=True, exist_ok=True)
    hosts = [Host(i) for i in range(count)]
    env, ports = _host_env(settings)
    began = time.monotonic()
    _network(hosts, ports)
    started = [_start_host(h, workers, env) for h in hosts]
    _wait_healthy(hosts)
    if using == "haproxy":
        _stop_nginx()
        _start_haproxy(hosts)
    else:
        HAPROXY.stop()
        _start_nginx(hosts, reload=any(started))
    BALANCER_FILE.write_text(using + "\n")
    print(f"  {count} hosts and {using} up in {time.monotonic() - began:.1f} s; "
          f"http://127.0.0.1:{NGINX_PORT}/", flush=True)
    return status()


def restart_rolling(settings: Settings, workers: int) -> int:
    """Restart every host's server, one host at a time, with nginx sending it nothing meanwhile.

    Per host: out of nginx (marked ``down``, graceful reload), SIGTERM and wait for the server to exit
    (it drains: ``/readyz`` 503 for the grace, requests in flight finish, WebSockets get 1001), start it
    again as ``up`` does (its ``--workers`` as it ran, else ``workers``), wait for ``/readyz`` 200, back
    into nginx.  A failed phase raises SetupFailed naming the host and the phase; the host stays out.
    """
    _require_root()
    hosts = sorted((h for h in map(_host_of, our_namespaces()) if h.index >= 0), key=lambda h: h.index)
    using = balancer()
    if not hosts or (nginx_pid() if using == "nginx" else HAPROXY.pid()) is None:
        raise SetupFailed(f"hosts restart: no hosts behind a running {using} (python -m stack hosts up)")
    env, _ = _host_env(settings)
    s = settings.server
    exit_within_s = s.shutdown_grace_s + s.shutdown_timeout_s + settings.ws.close_timeout_s + 5.0
    if "ASYNCSTACK_SERVER__SHUTDOWN_GRACE_S" not in os.environ:
        exit_within_s += float(HOST_GRACE_S)
    began = time.monotonic()
    for h in hosts:
        running = read_pid(h.pid_file)
        count = _workers_flag(running.pid) if running else None

        def drain(h: Host = h) -> None:
            _drain(h, exit_within_s)

        def start(h: Host = h, count: int = count or workers) -> None:
            _start_host(h, count, env)
            _wait_healthy([h], "/readyz")

        def out(h: Host = h) -> None:
            if using == "haproxy":
                # sent nothing new, what it holds goes on ("maint" and a failing check would mark it
                # down, and on-marked-down cuts its requests and WebSockets before it closes them)
                HAPROXY.set_state(h.upstream, "drain")
                HAPROXY.set_checks(h.upstream, enabled=False)
            else:
                _start_nginx(hosts, reload=True, down=[h], wait_gone=False)

        def back(h: Host = h) -> None:
            if using == "haproxy":
                HAPROXY.set_checks(h.upstream, enabled=True)
                HAPROXY.set_state(h.upstream, "ready")
                HAPROXY.wait_status(h.upstream, "UP")       # its health checks pass again
            else:
                _start_nginx(hosts, reload=True, wait_gone=False)

        took = [_phase(h, f"out of {using}", out), _phase(h, "drain and exit", drain),
                _phase(h, "start until /readyz 200", start), _phase(h, f"back into {using}", back)]
        print(f"  h{h.index} {h.netns}: out of {using} {took[0]:.2f} s, drained and exited {took[1]:.2f} s, "
              f"started and ready {took[2]:.2f} s, back in {using} {took[3]:.2f} s; {sum(took):.2f} s", flush=True)
    print(f"  {len(hosts)} hosts restarted one at a time in {time.monotonic() - began:.1f} s", flush=True)
    return 0


def _phase(h: Host, name: str, step: Callable[[], None]) -> float:
    """Run one phase of a host's restart; its duration, or SetupFailed naming the host and phase."""
    began = time.monotonic()
    try:
        step()
    except SetupFailed as exc:
        raise SetupFailed(f"restart of host {h.netns} ({h.address}), phase '{name}': {exc}\n"
                          f"The host is left out of the balancer; `python -m stack hosts up` starts it again and "
                          f"puts it back.") from None
    return time.monotonic() - began


def _workers_flag(pid: int) -> int | None:
    """The ``--workers`` a host's server was started with."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        return int(argv[argv.index("--workers") + 1])
    except (OSError, ValueError, IndexError):
        return None


def _drain(h: Host, within_s: float) -> None:
    """SIGTERM the host's server (its parent forwards it to the workers); wait until all of them exited."""
    running = read_pid(h.pid_file)
    if running is None:
        return                                  # not running: nothing to drain
    pids = [running.pid, *_children(running.pid)]
    os.kill(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + within_s
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            _terminate(pids, grace_s=1.0)
            raise SetupFailed(f"the server (pids {', '.join(map(str, pids))}) had not exited {within_s:.0f} s "
                              f"after SIGTERM, and was killed.\nLast lines of {h.log_file}:\n{tail(h.log_file)}")
        time.sleep(0.05)
    h.pid_file.unlink(missing_ok=True)


def down() -> int:
    """Remove everything named ours: nginx, each namespace's processes, the namespaces, links, the table."""
    _require_root()
    pid = _stop_nginx()
    if pid is not None:
        print(f"  stopped nginx (pid {pid})")
    pid = HAPROXY.stop()
    if pid is not None:
        print(f"  stopped haproxy (pid {pid})")
    BALANCER_FILE.unlink(missing_ok=True)
    _remove_namespaces(our_namespaces())
    # The veths go with their namespaces, a moment later (the kernel cleans a namespace up in the
    # background); then the bridge, and any link of ours left over.
    deadline = time.monotonic() + 5.0
    while any(n.startswith(f"{PREFIX}v") for n in our_links()) and time.monotonic() < deadline:
        time.sleep(0.05)
    for link in our_links():
        try:
            _ip("link", "del", link, what=f"removing {link}")
        except SetupFailed:
            if link in our_links():
                raise
            continue                            # it went meanwhile
        print(f"  removed {link}")
    if shutil.which("nft") is not None:
        tables = run(["nft", "list", "tables", "ip"], what="listing nftables tables", timeout=STEP_TIMEOUT_S)
        if NFT_TABLE in tables.split():
            run(["nft", "delete", "table", "ip", NFT_TABLE], what="removing the DNAT", timeout=STEP_TIMEOUT_S)
            print(f"  removed nftables table ip {NFT_TABLE}")
    for pid_file in DIR.glob("h*/pid"):
        stop(pid_file, grace_s=5.0)             # a server started outside its namespace by hand: gone too
    return 0


def status() -> int:
    _require_root()
    namespaces = our_namespaces()
    rows = [("host", "namespace", "address", "pids (parent: workers)", "/readyz")]
    bad = 0
    for netns in namespaces:
        h = _host_of(netns)
        if h.index < 0:
            rows.append(("?", netns, "-", "-", "not made by up (down removes it)"))
            continue
        running = read_pid(h.pid_file)
        workers = " ".join(map(str, sorted(_children(running.pid)))) if running else ""
        pids = f"{running.pid}: {workers or '-'}" if running else "-"
        try:
            code, body = _http(h.address, SERVE_PORT, "/readyz")
            ready = "200 ready" if code == 200 else f"{code} {body[:60]}"
        except OSError as exc:
            ready = f"no answer ({exc.strerror or exc})"
        bad += not ready.startswith("200")
        rows.append((f"h{h.index}", netns, h.upstream, pids, ready))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows if namespaces else []:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    using = balancer()
    pid, conf = (nginx_pid(), NGINX_CONF) if using == "nginx" else (HAPROXY.pid(), HAPROXY.conf)
    print(f"{using}  127.0.0.1:{NGINX_PORT}  " + (f"running (pid {pid}, {conf.relative_to(ROOT)})"
                                                 if pid else "not running"))
    if not namespaces:
        print("no hosts (python -m stack hosts up)")
    return 1 if bad or not namespaces or pid is None else 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m stack hosts",
                                description="The service on simulated hosts (network namespaces) behind nginx "
                                            "or HAProxy.")
    p.add_argument("action", choices=["up", "down", "status", "restart"])
    p.add_argument("--hosts", type=int, default=3, help="simulated hosts (up only)")
    p.add_argument("--workers", type=int, default=2,
                   help="serve processes per host (up; restart: for a host whose server was not running)")
    p.add_argument("--balancer", choices=BALANCERS,
                   help="up: nginx (passive health; the default), or haproxy (active checks of /readyz); "
                        "without it, the hosts already up keep theirs")
    p.add_argument("--rolling", action="store_true",
                   help="restart: one host at a time, each out of nginx while it restarts (required)")
    args = p.parse_args(argv)
    try:
        if args.action == "up":
            return up(load_settings(), args.hosts, args.workers, args.balancer)
        if args.action == "restart":
            if not args.rolling:
                p.error("restart needs --rolling (one host at a time; restarting all at once is `down` then `up`)")
            return restart_rolling(load_settings(), args.workers)
        if args.action == "down":
            return down()
        return status()
    except SetupFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

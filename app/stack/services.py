"""The four servers of the local stack: how each is installed, started and probed.

Every address comes from ``app.settings`` (its defaults are the stack's
ports), so the stack, the service and the tests agree on one set of
addresses.  State lives under ``.stack/<service>/`` (data, log, pid); built
binaries that are slow to make are cached under ``~/.cache/asyncstack``.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from app.settings import (
    IGNITE_COMMUNICATION_PORT,
    IGNITE_DISCOVERY_PORT,
    Settings,
)
from app.stack import probes
from app.stack.process import ROOT, STATE, SetupFailed, run

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "asyncstack"
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.0"
IGNITE_PROJECT = ROOT / "stack" / "ignite"


@dataclass
class Service:
    """One server process of the stack."""

    name: str
    host: str
    port: int
    startup_timeout_s: float
    argv: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def dir(self) -> Path:
        return STATE / self.name

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "pid"

    def install(self) -> None:
        """Make sure the server's program exists (may download and build)."""

    def prepare(self) -> list[str]:
        """Create the state folder; return the command line that starts the server."""
        raise NotImplementedError

    async def probe(self, settings: Settings, *, bootstrap: bool = False) -> str:
        """One real protocol round trip; a short description of what answered."""
        raise NotImplementedError

    def after_start(self) -> None:
        """One-time setup once the server answers (users, databases)."""


# -- Debian packages --------------------------------------------------------------------------

def apt_install(*packages: str) -> None:
    """Install Debian packages (as root, or through sudo without a password)."""
    sudo: list[str] = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and shutil.which("sudo") is None:
        raise SetupFailed(f"need root to install {', '.join(packages)}: run `sudo apt-get install "
                          f"{' '.join(packages)}` once, then try again")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run([*sudo, "apt-get", "update", "-qq"], what="apt-get update", env=env)
    run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        what=f"installing {', '.join(packages)}", env=env)


def _policy_rc_denies_autostart() -> None:
    """Keep Debian's packages from starting their own servers on default ports."""
    policy = Path("/usr/sbin/policy-rc.d")
    if os.geteuid() == 0 and not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)


# -- MariaDB ----------------------------------------------------------------------------------

class MariaDB(Service):
    def install(self) -> None:
        if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
            _policy_rc_denies_autostart()
            apt_install("mariadb-server", "mariadb-client")

    @property
    def socket(self) -> Path:
        return self.dir / "mysqld.sock"

    def prepare(self) -> list[str]:
        data = self.dir / "data"
        if not (data / "mysql").is_dir():
            data.mkdir(parents=True, exist_ok=True)
            argv = ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--skip-test-db",
                    f"--auth-root-socket-user={getpass.getuser()}"]
            if os.geteuid() == 0:
                argv.append("--user=root")
            run(argv, what=f"mysql: initialising {data}")
        argv = [shutil.which("mariadbd") or "mariadbd", "--no-defaults", f"--datadir={data}",
                f"--socket={self.socket}", f"--port={self.port}", f"--bind-address={self.host}",
                f"--pid-file={self.dir / 'mariadbd.pid'}", f"--log-error={self.log_file}",
                "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=128M",
                "--innodb-flush-log-at-trx-commit=2", "--max-connections=1000",
                "--character-set-server=utf8mb4"]
        if os.geteuid() == 0:
            argv.append("--user=root")
        return argv

    async def probe(self, settings: Settings, *, bootstrap: bool = False) -> str:
        return await probes.mysql(settings.mysql, server_only=bootstrap)

    def after_start(self) -> None:
        sql = ("CREATE DATABASE IF NOT EXISTS app CHARACTER SET utf8mb4; "
               "CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app'; "
               "GRANT ALL PRIVILEGES ON app.* TO 'app'@'%'; FLUSH PRIVILEGES;")
        run(["mariadb", "--no-defaults", f"--socket={self.socket}", "-u", "root", "-e", sql],
            what="mysql: creating the app database and user")


# -- Redis ------------------------------------------------------------------------------------

class Redis(Service):
    def install(self) -> None:
        if shutil.which("redis-server") is None:
            _policy_rc_denies_autostart()
            apt_install("redis-server")

    def prepare(self) -> list[str]:
        self.dir.mkdir(parents=True, exist_ok=True)
        return [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
                "--bind", self.host, "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                "--daemonize", "no", "--protected-mode", "no", "--maxclients", "20000"]

    async def probe(self, settings: Settings, *, bootstrap: bool = False) -> str:
        return await probes.redis(settings.redis)


# -- FerretDB (MongoDB wire protocol over SQLite) ------------------------------------------------

class FerretDB(Service):
    @property
    def binary(self) -> Path:
        return CACHE / "bin" / f"ferretdb-{FERRETDB_VERSION}"

    def install(self) -> None:
        if self.binary.exists():
            return
        if shutil.which("go") is None:
            raise SetupFailed("mongo: FerretDB is built with Go, and `go` is not on PATH")
        # `go install module@version` needs the proxy's version list, which is not always
        # served; downloading the one module version and building it works everywhere.
        build = CACHE / "build"
        build.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, GOFLAGS="-modcacherw")
        out = run(["go", "mod", "download", "-json", f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"],
                  what="mongo: downloading FerretDB", cwd=build, env=env)
        source = Path(json.loads(out)["Dir"])
        work = build / f"ferretdb-{FERRETDB_VERSION}"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(source, work)
        for path in work.rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)
        # FerretDB embeds its version from a file that its own release tooling writes.
        (work / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        run(["go", "build", "-trimpath", "-o", str(self.binary), "./cmd/ferretdb"],
            what="mongo: building FerretDB", cwd=work, env=env)
        shutil.rmtree(work, ignore_errors=True)

    def prepare(self) -> list[str]:
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        return [str(self.binary), "--handler=sqlite", f"--sqlite-url=file:{data}/",
                f"--listen-addr={self.address}", f"--state-dir={self.dir}", "--telemetry=disable",
                "--log-level=warn", "--debug-addr=127.0.0.1:0"]

    async def probe(self, settings: Settings, *, bootstrap: bool = False) -> str:
        return await probes.mongo(settings.mongo)


# -- Apache Ignite ----------------------------------------------------------------------------

class IgniteNode(Service):
    index: int = 0

    @property
    def lib(self) -> Path:
        return STATE / "ignite" / "lib"

    def install(self) -> None:
        classes = IGNITE_PROJECT / "target" / "classes"
        stamp = STATE / "ignite" / "build.stamp"
        pom = IGNITE_PROJECT / "pom.xml"
        sources = [pom, *(IGNITE_PROJECT / "src").rglob("*.java")]
        newest = max(p.stat().st_mtime for p in sources)
        if classes.is_dir() and stamp.exists() and stamp.stat().st_mtime >= newest and self.lib.is_dir():
            return
        if shutil.which("mvn") is None or shutil.which("java") is None:
            raise SetupFailed("ignite: the node is built with Maven and run with Java 17+; "
                              "`mvn` or `java` is not on PATH")
        stamp.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.lib, ignore_errors=True)
        run(["mvn", "-q", "-B", "-f", str(pom), "-DskipTests", "package", "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={self.lib}"], what="ignite: building the node")
        stamp.touch()

    def prepare(self) -> list[str]:
        self.dir.mkdir(parents=True, exist_ok=True)
        options = [line.strip() for line in (IGNITE_PROJECT / "jvm-options.txt").read_text().splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
        classpath = f"{IGNITE_PROJECT / 'target' / 'classes'}:{self.lib}/*"
        return [shutil.which("java") or "java", *options, "-cp", classpath, "stack.IgniteNode",
                "--name", self.name, "--work-dir", str(self.dir / "work"),
                "--client-port", str(self.port),
                "--discovery-port", str(IGNITE_DISCOVERY_PORT + self.index),
                "--discovery-addresses",
                f"127.0.0.1:{IGNITE_DISCOVERY_PORT}..{IGNITE_DISCOVERY_PORT + 9}",
                "--communication-port", str(IGNITE_COMMUNICATION_PORT + self.index)]

    async def probe(self, settings: Settings, *, bootstrap: bool = False) -> str:
        return await probes.ignite(self.host, self.port, settings.ignite)


def services(settings: Settings, ignite_nodes: int = 1) -> list[Service]:
    """The stack's services at the addresses the settings name, in start order."""
    ignite_host, ignite_port = settings.ignite.nodes[0]
    nodes: list[Service] = []
    for i in range(ignite_nodes):
        node = IgniteNode(f"ignite-{i}", ignite_host, ignite_port + i, startup_timeout_s=120.0)
        node.index = i
        nodes.append(node)
    return [
        MariaDB("mysql", settings.mysql.host, settings.mysql.port, startup_timeout_s=60.0),
        Redis("redis", settings.redis.host, settings.redis.port, startup_timeout_s=15.0),
        FerretDB("mongo", settings.mongo.host, settings.mongo.port, startup_timeout_s=30.0),
        *nodes,
    ]


def known_ignite_nodes() -> int:
    """How many Ignite nodes this stack has state for (at least one)."""
    root = STATE
    return max(1, len([p for p in root.glob("ignite-*") if p.is_dir()])) if root.is_dir() else 1


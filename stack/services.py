"""The servers of the local stack: how each is installed, started and probed.

Every address of the service's four backends comes from ``app.settings`` (its
defaults are the stack's ports), so the stack, the service and the tests agree
on one set of addresses.  State lives under ``.stack/<service>/`` (data, log,
pid); built binaries that are slow to make are cached under ``~/.cache/asyncstack``.
A service marked ``on_demand`` (RabbitMQ, which only the load test's Celery
variant uses) is left out when ``up`` is given no names: it starts only when named.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from app.settings import REDIS_CLUSTER_PORTS, REDIS_SHARD_PORTS, STACK_HOST, Settings
from drivers.errors import BackendUnavailable
from drivers.ignite import Client as IgniteClient
from drivers.redis import RedisConfig
from stack import probes, rabbitmq, redis_cluster
from stack.process import ROOT, STATE, SetupFailed, run

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "asyncstack"
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.0"
# FerretDB 1.24 pins modernc.org/sqlite v1.31.1, whose context cancellation can interrupt the *next*
# statement on a pooled SQLite connection: a find whose maxTimeMS ran out made unrelated finds without
# any deadline fail with "interrupted (9)" (about 1 in 3 of them under 200 concurrent finds). Later
# releases close that race; the stack builds FerretDB against one of them.
FERRETDB_SQLITE = "v1.62.0"
IGNITE_PROJECT = ROOT / "stack" / "ignite"
# Ignite's own defaults (47500, 47100) lie inside Linux's ephemeral port range (32768-60999):
# a client socket's source port in TIME-WAIT there makes a node fail to bind at start.  Every
# port of the stack is kept below 32768.  (The client ports are the service's defaults, in
# app.settings; these are the nodes' own, which only the stack needs.)
IGNITE_DISCOVERY_PORT = 24500       # node i: IGNITE_DISCOVERY_PORT + i (list: +0..+9)
IGNITE_COMMUNICATION_PORT = 24100   # node i: IGNITE_COMMUNICATION_PORT + i
# The secure node (TLS + authentication, its own one-node cluster): `ignite-secure`.
IGNITE_SECURE_PORT = 10900
IGNITE_SECURE_DISCOVERY_PORT = 24600  # discovery list 127.0.0.1:24600..24609
IGNITE_SECURE_COMMUNICATION_PORT = 24200
# RabbitMQ's ports (15682 AMQP, 25682 distribution, 24369 epmd): stack/rabbitmq.py.


@dataclass
class Service:
    """One server process of the stack."""

    name: str
    host: str
    port: int
    startup_timeout_s: float
    argv: list[str] = field(default_factory=list)
    on_demand: ClassVar[bool] = False   # started only when named: `up` with no names leaves it out

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

    def environment(self) -> dict[str, str] | None:
        """The server process's whole environment, or None to inherit this one's."""
        return None

    async def probe(self, settings: Settings, *, bootstrap: bool = False) -> str:
        """One real protocol round trip; a short description of what answered."""
        raise NotImplementedError

    def after_start(self) -> None:
        """One-time setup once the server answers (users, databases)."""

    def after_stop(self) -> None:
        """Clean up what the server left running outside its own process group."""


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


def chromium() -> str:
    """The path of Debian's ``chromium`` (headless, for the status page's browser test), installed if missing."""
    found = shutil.which("chromium")
    if found is None:
        apt_install("chromium")
        found = shutil.which("chromium")
    if found is None:
        raise SetupFailed("chromium was installed but is not on PATH")
    return found


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


class RedisShard(Redis):
    """One of the standalone Redis nodes the cache places keys on by hashing (``redis-shard-<i>``)."""

    async def probe(self, settings: Settings, *, bootstrap: bool = False) -> str:
        return await probes.redis(RedisConfig(host=self.host, port=self.port))


class RedisClusterNode(Redis):
    """One of the six nodes of the stack's Redis Cluster (``redis-cluster-<i>``; see ``stack.redis_cluster``).

    Started empty unless the other nodes form a cluster already (then it rejoins it, a killed
    primary once its replica was promoted); up once its ``CLUSTER INFO`` says ``cluster_state:ok``,
    the probe forming the cluster when it is time.
    """

    def prepare(self) -> list[str]:
        argv = super().prepare()
        rejoin = redis_cluster.formed_elsewhere(self.port)
        if rejoin:
            redis_cluster.wait_for_failover(self.dir, self.port)
        redis_cluster.forget(self.dir, cluster_state=not rejoin)
        return [*argv, *redis_cluster.node_options(self.dir)]

    async def probe(self, settings: Settings, *, bootstrap: bool = False) -> str:
        return await redis_cluster.probe(self.host, self.port)


# -- FerretDB (MongoDB wire protocol over SQLite) ------------------------------------------------

class FerretDB(Service):
    @property
    def binary(self) -> Path:
        return CACHE / "bin" / f"ferretdb-{FERRETDB_VERSION}-sqlite-{FERRETDB_SQLITE}"

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
        run(["go", "get", f"modernc.org/sqlite@{FERRETDB_SQLITE}"],
            what="mongo: taking the fixed SQLite driver for FerretDB", cwd=work, env=env)
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


class SecureIgniteNode(IgniteNode):
    """A one-node cluster of its own with TLS on the thin-client port and authentication.

    Its TLS material is made once with ``keytool`` under ``.stack/ignite-secure/tls/``:
    a throwaway CA (``ca.pem`` for clients), the node's key store signed by it for
    127.0.0.1/localhost, and a trust store holding the CA.  Authentication implies
    persistence (the node activates its cluster itself); the user is ignite/ignite.
    """

    USERNAME = "ignite"
    PASSWORD = "ignite"
    STORE_PASSWORD = "asyncstack"  # the key and trust stores' password: a throwaway

    @classmethod
    def stack(cls) -> SecureIgniteNode:
        """The stack's secure node, at the addresses ``app.settings`` names."""
        return cls("ignite-secure", STACK_HOST, IGNITE_SECURE_PORT, startup_timeout_s=120.0)

    @property
    def tls_dir(self) -> Path:
        return self.dir / "tls"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this node's throwaway CA (and checks the host)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _has_tls_material(self) -> bool:
        return all((self.tls_dir / f).exists() for f in ("ca.pem", "keystore.p12", "truststore.p12"))

    def make_tls_material(self) -> None:
        """CA, node key store and trust store, made once (in a scratch folder, then moved in place)."""
        if self._has_tls_material():
            return
        if shutil.which("keytool") is None:
            raise SetupFailed("ignite-secure: `keytool` (it comes with Java) is not on PATH")
        self.dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="tls-", dir=self.dir))
        pw = self.STORE_PASSWORD

        def keytool(*args: str) -> None:
            run(["keytool", *args], what="ignite-secure: making the TLS key stores", cwd=scratch)

        store = ["-storetype", "PKCS12", "-storepass", pw, "-keypass", pw]
        keytool("-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-validity", "3650",
                "-dname", "CN=asyncstack throwaway test CA", "-ext", "bc:c", "-keystore", "ca.p12", *store)
        keytool("-exportcert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", "-storepass", pw, "-file", "ca.pem")
        keytool("-genkeypair", "-alias", "node", "-keyalg", "RSA", "-keysize", "2048", "-validity", "3650",
                "-dname", "CN=127.0.0.1", "-keystore", "keystore.p12", *store)
        keytool("-certreq", "-alias", "node", "-keystore", "keystore.p12", "-storepass", pw, "-file", "node.csr")
        keytool("-gencert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", "-storepass", pw, "-infile", "node.csr",
                "-outfile", "node.pem", "-validity", "3650", "-ext", "san=ip:127.0.0.1,dns:localhost",
                "-ext", "ku:c=digitalSignature,keyEncipherment", "-ext", "eku=serverAuth")
        keytool("-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem", "-keystore", "keystore.p12",
                "-storepass", pw)
        keytool("-importcert", "-noprompt", "-alias", "node", "-file", "node.pem", "-keystore", "keystore.p12",
                "-storepass", pw)
        keytool("-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem", "-keystore", "truststore.p12",
                "-storetype", "PKCS12", "-storepass", pw)
        if self._has_tls_material():  # another `stack up` made them meanwhile: keep theirs
            shutil.rmtree(scratch, ignore_errors=True)
            return
        shutil.rmtree(self.tls_dir, ignore_errors=True)  # an incomplete earlier attempt
        scratch.rename(self.tls_dir)

    def prepare(self) -> list[str]:
        self.make_tls_material()
        java = super().prepare()
        java = java[:java.index("stack.IgniteNode") + 1]
        return [*java, "--name", self.name, "--work-dir", str(self.dir / "work"),
                "--client-port", str(self.port),
                "--discovery-port", str(IGNITE_SECURE_DISCOVERY_PORT),
                "--discovery-addresses",
                f"127.0.0.1:{IGNITE_SECURE_DISCOVERY_PORT}..{IGNITE_SECURE_DISCOVERY_PORT + 9}",
                "--communication-port", str(IGNITE_SECURE_COMMUNICATION_PORT),
                "--auth", "--ssl-keystore", str(self.tls_dir / "keystore.p12"),
                "--ssl-truststore", str(self.tls_dir / "truststore.p12"), "--ssl-password", self.STORE_PASSWORD]

    async def probe(self, settings: Settings, *, bootstrap: bool = False) -> str:
        if not self.ca_file.exists():
            raise BackendUnavailable(f"ignite-secure: no TLS material yet ({self.ca_file})", backend="ignite")
        timeout = settings.ignite.connect_timeout_s
        async with IgniteClient([(self.host, self.port)], username=self.USERNAME, password=self.PASSWORD,
                                ssl=self.ssl_context(), request_timeout_s=timeout,
                                connect_timeout_s=timeout) as client:
            await client.ping()
            return f"Ignite thin client {client.protocol_version_text}, TLS, user {self.USERNAME}"


# -- RabbitMQ (on demand: the load test's Celery variant with an AMQP broker) ---------------------

class RabbitMQ(Service):
    """Debian's rabbitmq-server as a node of our own under ``.stack/rabbitmq/`` (see ``stack.rabbitmq``).

    Erlang starts epmd as a daemon outside the node's process group; ``after_stop`` ends it (its
    port is the node's own, so it is ours).
    """

    on_demand = True

    @classmethod
    def stack(cls) -> RabbitMQ:
        return cls("rabbitmq", rabbitmq.HOST, rabbitmq.PORT, startup_timeout_s=60.0)

    def install(self) -> None:
        if not Path(rabbitmq.SCRIPT).exists():
            _policy_rc_denies_autostart()
            apt_install("rabbitmq-server")

    def prepare(self) -> list[str]:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "enabled_plugins").write_text("[].\n")
        # the shell that runs the script is argv[0], so the pid file names what /proc shows
        return ["/bin/sh", rabbitmq.SCRIPT]

    def environment(self) -> dict[str, str]:
        return rabbitmq.environment(self.dir, self.host, self.port)

    async def probe(self, settings: Settings, *, bootstrap: bool = False) -> str:
        return await probes.rabbitmq(self.host, self.port, rabbitmq.USERNAME, rabbitmq.PASSWORD)

    def after_stop(self) -> None:
        epmd = shutil.which("epmd")
        if epmd is None:
            return
        try:  # refused while a node is registered, fails when it is not running: both are fine
            subprocess.run([epmd, "-port", str(rabbitmq.EPMD_PORT), "-kill"], capture_output=True, timeout=10,
                           check=False)
        except subprocess.TimeoutExpired:
            pass


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
        *(RedisShard(f"redis-shard-{i}", STACK_HOST, port, startup_timeout_s=15.0)
          for i, port in enumerate(REDIS_SHARD_PORTS)),
        *(RedisClusterNode(f"redis-cluster-{i}", STACK_HOST, port, startup_timeout_s=30.0)
          for i, port in enumerate(REDIS_CLUSTER_PORTS)),
        FerretDB("mongo", settings.mongo.host, settings.mongo.port, startup_timeout_s=30.0),
        *nodes,
        SecureIgniteNode.stack(),
        RabbitMQ.stack(),
    ]


def known_ignite_nodes() -> int:
    """How many Ignite nodes this stack has state for (at least one)."""
    root = STATE
    return max(1, len([p for p in root.glob("ignite-[0-9]*") if p.is_dir()])) if root.is_dir() else 1


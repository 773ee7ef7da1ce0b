"""The stack's RabbitMQ node: its addresses, and the environment that keeps it ours and on loopback.

Standard library only, so the load test's Celery processes can name the broker without importing
the rest of the stack.  Rules of this file:

- every port is on 127.0.0.1 and below 32768 (Linux's ephemeral range starts there), and none is
  RabbitMQ's default (5672 AMQP, 25672 distribution, 4369 epmd, 15672 management UI), so a
  developer's own broker never meets this one;
- everything the node writes (database, logs, Erlang cookie) is under its state folder, and it
  reads nothing from ``/etc/rabbitmq`` or ``/var/lib/rabbitmq``: the three configuration files
  it is pointed at do not exist, and its plugin list is empty;
- the user is RabbitMQ's default guest/guest, which the broker accepts from loopback only.
"""

from __future__ import annotations

import os
from pathlib import Path

HOST = "127.0.0.1"
PORT = 15682            # AMQP 0-9-1
DIST_PORT = 25682       # the Erlang distribution listener (RabbitMQ's default would be PORT + 20000)
EPMD_PORT = 24369       # an epmd of its own: the node registers there, not with a system epmd
NODENAME = "asyncstack@localhost"
USERNAME = "guest"
PASSWORD = "guest"
SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # Debian's script itself, not the wrapper that su's


def url(host: str = HOST, port: int = PORT) -> str:
    """The AMQP URL of the default virtual host, as Celery and kombu take it."""
    return f"amqp://{USERNAME}:{PASSWORD}@{host}:{port}//"


def environment(state: Path, host: str = HOST, port: int = PORT) -> dict[str, str]:
    """This process's environment plus the variables that place the node under ``state``."""
    return {
        **os.environ,
        "HOME": str(state),  # where Erlang keeps its cookie
        "RABBITMQ_NODENAME": NODENAME,
        "RABBITMQ_NODE_IP_ADDRESS": host,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(DIST_PORT),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"-kernel inet_dist_use_interface {{{host.replace('.', ',')}}}",
        "ERL_EPMD_ADDRESS": host,
        "ERL_EPMD_PORT": str(EPMD_PORT),
        "RABBITMQ_MNESIA_BASE": str(state / "mnesia"),
        "RABBITMQ_LOG_BASE": str(state / "log"),
        "RABBITMQ_LOGS": "-",  # the node's log on its output, which the stack appends to its log file
        "RABBITMQ_CONF_ENV_FILE": str(state / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(state / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(state / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(state / "enabled_plugins"),
    }

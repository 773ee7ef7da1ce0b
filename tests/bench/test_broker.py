"""The RabbitMQ broker of the ``celery-rabbitmq`` variant: a stack service started only when named, ours, on loopback.

Checked on its command line and environment, without starting it.
"""

from __future__ import annotations

from pathlib import Path

from app.settings import load_settings
from stack import cli, rabbitmq
from stack import services as stack_services
from stack.process import STATE
from stack.services import RabbitMQ, services


def test_stack_up_without_names_leaves_rabbitmq_out_and_down_stops_it_too() -> None:
    every = services(load_settings(), 3)
    assert "rabbitmq" not in [s.name for s in cli._select(every, [])]
    assert [s.name for s in cli._select(every, ["rabbitmq"])] == ["rabbitmq"]
    assert "rabbitmq" in [s.name for s in cli._select(every, [], on_demand=True)]


def test_rabbitmq_listens_on_loopback_at_ports_of_its_own_below_the_ephemeral_range() -> None:
    node = RabbitMQ.stack()
    env = node.environment()
    ports = {rabbitmq.PORT, rabbitmq.DIST_PORT, rabbitmq.EPMD_PORT}
    others = {s.port for s in services(load_settings(), 10) if s.name != "rabbitmq"}
    for first in (stack_services.IGNITE_DISCOVERY_PORT, stack_services.IGNITE_COMMUNICATION_PORT,
                  stack_services.IGNITE_SECURE_DISCOVERY_PORT, stack_services.IGNITE_SECURE_COMMUNICATION_PORT):
        others.update(range(first, first + 10))  # the Ignite nodes' own ports
    assert len(ports) == 3 and not ports & others and max(ports) < 32768
    assert not ports & {5672, 25672, 4369, 15672}  # a developer's own broker keeps its defaults
    assert env["RABBITMQ_NODE_IP_ADDRESS"] == env["ERL_EPMD_ADDRESS"] == node.host == "127.0.0.1"
    assert env["RABBITMQ_NODE_PORT"] == str(node.port)
    assert env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] == "-kernel inet_dist_use_interface {127,0,0,1}"
    assert (env["RABBITMQ_DIST_PORT"], env["ERL_EPMD_PORT"]) == (str(rabbitmq.DIST_PORT), str(rabbitmq.EPMD_PORT))


def test_everything_rabbitmq_reads_or_writes_is_under_its_state_folder() -> None:
    node = RabbitMQ.stack()
    assert node.dir == STATE / "rabbitmq"
    env = node.environment()
    places = ["HOME", "RABBITMQ_MNESIA_BASE", "RABBITMQ_LOG_BASE", "RABBITMQ_CONF_ENV_FILE", "RABBITMQ_CONFIG_FILE",
              "RABBITMQ_ADVANCED_CONFIG_FILE", "RABBITMQ_ENABLED_PLUGINS_FILE"]
    outside = {k: env[k] for k in places if not Path(env[k]).is_relative_to(node.dir)}
    assert not outside


def test_the_broker_url_is_the_nodes_amqp_address() -> None:
    assert rabbitmq.url() == f"amqp://guest:guest@127.0.0.1:{rabbitmq.PORT}//"
    assert RabbitMQ.stack().address == f"127.0.0.1:{rabbitmq.PORT}"

"""``python -m stack up|down|status``: the local stack of real servers, for development and tests.

It lives outside the service's package (``app``): a deployment never needs it.
The service's default settings point at the addresses it starts servers on.

``up`` installs what is missing, starts each server that does not already
answer at its address, waits (with a deadline) until it answers a real
protocol request, and prints a status table.  A server that already answers is
reused and left alone, so ``up`` twice is harmless and a second checkout can
share a running stack.  ``down`` stops only processes this checkout started.

Without names, ``up`` and ``status`` mean the default set: every service but
the on-demand ones (RabbitMQ), which ``up rabbitmq`` starts and ``status``
shows once started; ``down`` without names stops them all.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

from app.settings import Settings
from drivers.errors import DriverError
from stack.process import SetupFailed, read_pid, spawn, stop, tail
from stack.services import Service, known_ignite_nodes, services


@dataclass
class Row:
    service: Service
    state: str
    detail: str
    pid: int | None = None


async def _answer(service: Service, settings: Settings, timeout: float, *, bootstrap: bool = False) -> str:
    async with asyncio.timeout(timeout):
        return await service.probe(settings, bootstrap=bootstrap)


async def _check(service: Service, settings: Settings) -> Row:
    running = read_pid(service.pid_file)
    pid = running.pid if running else None
    try:
        detail = await _answer(service, settings, 5.0)
    except (DriverError, TimeoutError, OSError) as exc:
        return Row(service, "down", _reason(exc), pid)
    except Exception as exc:  # a probe bug must still name the service, not end the table
        return Row(service, "down", f"{type(exc).__name__}: {_reason(exc)}", pid)
    return Row(service, "up" if running else "up (not started by this stack)", detail, pid)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "no answer before the deadline"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


async def _wait_until_up(service: Service, settings: Settings) -> str:
    """Poll the service until it answers; fail early if its process died."""
    deadline = time.monotonic() + service.startup_timeout_s
    last = "not started"
    bootstrap = service.name == "mysql"
    while time.monotonic() < deadline:
        if read_pid(service.pid_file) is None:
            raise SetupFailed(f"{service.name} at {service.address}: the process exited while starting.\n"
                              f"Last lines of {service.log_file}:\n{tail(service.log_file)}")
        try:
            return await _answer(service, settings, 3.0, bootstrap=bootstrap)
        except (DriverError, TimeoutError, OSError) as exc:
            last = _reason(exc)
        await asyncio.sleep(0.25)
    raise SetupFailed(f"{service.name} at {service.address} did not answer within "
                      f"{service.startup_timeout_s:.0f} s (last error: {last}).\n"
                      f"Last lines of {service.log_file}:\n{tail(service.log_file)}")


async def up(settings: Settings, names: list[str], ignite_nodes: int) -> int:
    chosen = _select(services(settings, ignite_nodes), names)
    checks = await asyncio.gather(*(_check(s, settings) for s in chosen))
    failures: list[str] = []
    started: list[Service] = []
    for row in checks:
        if row.state != "down":
            continue
        svc = row.service
        if row.pid is not None:  # ours and still starting: wait for it, never start a second one
            started.append(svc)
            continue
        try:
            began = time.monotonic()
            svc.install()
            argv = svc.prepare()
            svc.log_file.parent.mkdir(parents=True, exist_ok=True)
            spawn(argv, log_file=svc.log_file, pid_file=svc.pid_file, cwd=svc.dir, env=svc.environment())
            print(f"  starting {svc.name} at {svc.address} (setup {time.monotonic() - began:.1f} s)",
                  flush=True)
            started.append(svc)
        except SetupFailed as exc:
            failures.append(str(exc))

    async def bring_up(svc: Service) -> None:
        try:
            await _wait_until_up(svc, settings)
            if svc.name == "mysql":
                svc.after_start()
        except SetupFailed as exc:
            failures.append(str(exc))

    began = time.monotonic()
    await asyncio.gather(*(bring_up(s) for s in started))
    if started:
        print(f"  waited {time.monotonic() - began:.1f} s for {', '.join(s.name for s in started)}",
              flush=True)
    rows = await asyncio.gather(*(_check(s, settings) for s in chosen))
    _print_table(rows)
    for message in failures:
        print(f"\nerror: {message}")
    down_rows = [r for r in rows if r.state == "down"]
    if down_rows and not failures:
        for r in down_rows:
            print(f"\nerror: {r.service.name} at {r.service.address}: {r.detail}\n"
                  f"Last lines of {r.service.log_file}:\n{tail(r.service.log_file)}")
    return 1 if failures or down_rows else 0


def down(settings: Settings, names: list[str]) -> int:
    chosen = _select(services(settings, known_ignite_nodes()), names, on_demand=True)
    for svc in reversed(chosen):
        pid = stop(svc.pid_file)
        if pid is not None:
            svc.after_stop()
            print(f"  stopped {svc.name} (pid {pid})")
    return 0


async def status(settings: Settings, names: list[str]) -> int:
    chosen = _select(services(settings, known_ignite_nodes()), names, on_demand="started")
    rows = await asyncio.gather(*(_check(s, settings) for s in chosen))
    _print_table(rows)
    bad = [r for r in rows if r.state == "down"]
    for r in bad:
        print(f"error: {r.service.name} at {r.service.address} is not answering: {r.detail}")
    return 1 if bad else 0


def _select(all_services: list[Service], names: list[str],
            on_demand: bool | Literal["started"] = False) -> list[Service]:
    """The services named (a name also means its numbered ones: ``ignite`` is ``ignite-0``, ...).

    Without names, the default set, plus the on-demand services when ``on_demand`` is True, or
    those of them this checkout started when it is ``"started"``.
    """
    if not names:
        return [s for s in all_services if not s.on_demand or on_demand is True
                or (on_demand == "started" and read_pid(s.pid_file) is not None)]
    unknown = [n for n in names if not any(s.name == n or s.name.startswith(n + "-") for s in all_services)]
    if unknown:
        known = ", ".join(sorted({s.name.split("-")[0] for s in all_services}))
        raise SetupFailed(f"unknown service {', '.join(unknown)} (known: {known})")
    return [s for s in all_services if any(s.name == n or s.name.startswith(n + "-") for n in names)]


def _print_table(rows: list[Row]) -> None:
    header = ("service", "address", "state", "pid", "answer", "log")
    table = [header] + [
        (r.service.name, r.service.address, r.state, str(r.pid or "-"), r.detail[:60],
         str(r.service.log_file.relative_to(r.service.log_file.parents[2])))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())

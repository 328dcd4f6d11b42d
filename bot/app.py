"""Composition root: config -> adapters -> services -> dispatcher. The only place that wires
adapters to handlers; both ``replbot run`` and ``replbot demo`` start here."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bot.adapters.audit_sqlite import SqliteAuditLog
from bot.adapters.jobs_sqlite import SqliteJobStore
from bot.adapters.postgres import PsycopgPostgres
from bot.adapters.shell import LocalConnector, RoutingConnector, SshConnector
from bot.clock import SystemClock
from bot.config import AppConfig
from bot.redact import Redactor
from bot.services.authz import Authorizer
from bot.services.confirmations import ConfirmationService
from bot.services.rebuild.service import RebuildService
from bot.services.registry import Services
from bot.services.replication import ReplicationService
from handlers.dispatch import Dispatcher
from handlers.registry import ACTIONS, COMMANDS


def redactor_for(config: AppConfig) -> Redactor:
    """A redactor that knows every secret in ``config``."""
    redactor = Redactor()
    if config.telegram.token is not None:
        redactor.add(config.telegram.token.reveal())
    for cluster in config.clusters:
        for node in cluster.nodes:
            if node.password is not None:
                redactor.add(node.password.reveal())
    return redactor


@dataclass
class Runtime:
    """The opened services of one bot process; close() releases them."""

    config: AppConfig
    services: Services
    dispatcher: Dispatcher
    audit: SqliteAuditLog
    jobs: SqliteJobStore
    postgres: PsycopgPostgres

    async def close(self) -> None:
        """Interrupt running rebuilds (state kept for the next start), close the databases."""
        await self.services.rebuild.shutdown()
        await self.postgres.close()
        await self.jobs.close()
        await self.audit.close()


async def open_runtime(config: AppConfig, redactor: Redactor | None = None) -> Runtime:
    """Open the adapters and build the services and dispatcher for ``config``."""
    redact = redactor or redactor_for(config)
    clock = SystemClock()
    audit = SqliteAuditLog(config.audit.path, redact=redact)
    await audit.open()
    jobs = SqliteJobStore(config.audit.path)
    await jobs.open()
    postgres = PsycopgPostgres(config.query_timeout_s)
    # "local" nodes (the demo) run commands on this host, as the PostgreSQL OS user if root.
    shells = RoutingConnector(
        SshConnector(), LocalConnector("postgres" if os.geteuid() == 0 else None)
    )
    services = Services(
        config=config,
        authz=Authorizer(config.users, config.telegram.allowed_chat_ids),
        replication=ReplicationService(config, postgres),
        confirmations=ConfirmationService(clock, config.telegram.confirm_timeout_s),
        rebuild=RebuildService(config, postgres, shells, jobs, audit, clock),
        audit=audit,
        clock=clock,
    )
    return Runtime(config, services, Dispatcher(services, COMMANDS, ACTIONS), audit, jobs, postgres)


def command_menu() -> dict[str, str]:
    """Command name -> summary, for Telegram's setMyCommands."""
    return {name: spec.summary for name, spec in COMMANDS.items() if name != "start"}

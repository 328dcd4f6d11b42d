"""The bundle of services handed to the transports by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import AppConfig
from bot.ports import AuditLog, Clock, LanguageStore
from bot.services.authz import Authorizer
from bot.services.charts import ChartService
from bot.services.confirmations import ConfirmationService
from bot.services.monitor.alerts import AlertService
from bot.services.monitor.service import MonitorService
from bot.services.rebuild.service import RebuildService
from bot.services.repair.service import RepairService
from bot.services.replication import ReplicationService
from bot.services.slotless import SlotlessService


@dataclass(frozen=True)
class Services:
    """Everything a handler may call; no transport or library types."""

    config: AppConfig
    authz: Authorizer
    replication: ReplicationService
    confirmations: ConfirmationService
    rebuild: RebuildService
    audit: AuditLog
    clock: Clock
    alerts: AlertService | None = None
    monitor: MonitorService | None = None
    slotless: SlotlessService | None = None  # /attachslot, /detachslot
    repair: RepairService | None = None
    charts: ChartService | None = None  # /graph
    languages: LanguageStore | None = None  # /lang choices; None: not persisted

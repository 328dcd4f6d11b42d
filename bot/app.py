"""Composition root: config -> adapters -> services -> dispatcher. The only place that wires
adapters to handlers; both ``replbot run`` and ``replbot demo`` start here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from bot.adapters.alerts_sqlite import SqliteAlertStore
from bot.adapters.audit_sqlite import SqliteAuditLog, resolve_audit_key
from bot.adapters.charts_matplotlib import MatplotlibCharts
from bot.adapters.history_sqlite import SqliteHistoryStore
from bot.adapters.jobs_sqlite import SqliteJobStore
from bot.adapters.metrics_http import MetricsServer
from bot.adapters.monitor_pg import PsycopgMonitorProbe
from bot.adapters.postgres import PsycopgPostgres
from bot.adapters.prefs_sqlite import SqliteLanguageStore
from bot.adapters.shell import LocalConnector, RoutingConnector
from bot.adapters.slots_sqlite import SqliteSlotOverrideStore
from bot.clock import SystemClock
from bot.config import AppConfig
from bot.logsetup import install_redaction
from bot.models import ChartRef, Role
from bot.ports import Clock, Notifier, PhotoNotifier
from bot.redact import Redactor
from bot.services.authz import Authorizer
from bot.services.charts import ChartService
from bot.services.confirmations import ConfirmationService
from bot.services.monitor.alerts import AlertService
from bot.services.monitor.delivery import DeliveryService
from bot.services.monitor.health import (
    HealthInputs,
    evaluate_health,
    outbox_stuck_after,
    stale_after,
)
from bot.services.monitor.metrics import CountingAuditLog, Metrics
from bot.services.monitor.service import MonitorService
from bot.services.rebuild.service import RebuildService
from bot.services.registry import Services
from bot.services.repair.service import RepairService
from bot.services.replication import ReplicationService
from bot.services.slotless import SlotlessService
from bot.services.slotview import SlotOverrides
from handlers.alerts import AlertRenderer, DeliveryRenderer
from handlers.dispatch import Dispatcher
from handlers.graph import alert_chart_sender
from handlers.registry import ACTIONS, COMMANDS
from handlers.repair import repair_target

log = logging.getLogger(__name__)
DAY_S = 86400.0
HOUSEKEEPING_EVERY_S = 6 * 3600.0  # retention runs at start and this often
HISTORY_COMPACT_EVERY_S = 300.0  # the monitor history is downsampled this often


def redactor_for(config: AppConfig) -> Redactor:
    """A redactor that knows every secret in ``config``."""
    redactor = Redactor()
    if config.telegram.token is not None:
        redactor.add(config.telegram.token.reveal())
    for cluster in config.clusters:
        for node in cluster.nodes:
            if node.password is not None:
                redactor.add(node.password.reveal())
    if config.audit.key is not None:
        redactor.add(config.audit.key.reveal())
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
    alert_store: SqliteAlertStore
    alerts: AlertService
    monitor: MonitorService
    metrics: Metrics
    history: SqliteHistoryStore | None = None
    charts: ChartService | None = None
    delivery: DeliveryService | None = None
    metrics_server: MetricsServer | None = None
    health_server: MetricsServer | None = None
    housekeeping: asyncio.Task[None] | None = None
    compaction: asyncio.Task[None] | None = None
    polling_since: float | None = None  # set once a Telegram transport polls (replbot run)
    last_poll_at: float | None = None
    polls_ok: int = 0
    slot_store: SqliteSlotOverrideStore | None = None
    languages: SqliteLanguageStore | None = None  # /lang choices

    async def chosen_languages(self) -> dict[int, str]:
        """The /lang choices of the configured users (for their menus at start)."""
        if self.languages is None:
            return {}
        chosen = {}
        for user in self.config.users:
            language = await self.languages.get(user.id)
            if language:
                chosen[user.id] = language
        return chosen

    def watch_polling(self) -> None:
        """From now on /healthz expects answered getUpdates (see :meth:`note_poll`)."""
        self.polling_since = self.services.clock.monotonic()

    def note_poll(self) -> None:
        """Telegram answered a getUpdates."""
        self.last_poll_at = self.services.clock.monotonic()
        self.polls_ok += 1

    async def start_monitor(
        self, notifier: Notifier, on_wait: Callable[[int, float, str], None] | None = None
    ) -> None:
        """Deliver the outbox through ``notifier``, start polling, serve /metrics if set up.

        Messages left in the outbox by an earlier run are delivered first, in order.
        """
        if self.delivery is not None:
            raise RuntimeError("the monitor is already running")
        settings = self.config.monitor
        self.delivery = DeliveryService(
            self.alert_store,
            notifier,
            self.services.clock,
            retry_initial_s=settings.send_retry_initial_s,
            retry_max_s=settings.send_retry_max_s,
            on_wait=on_wait,
            formatter=DeliveryRenderer(language=self.config.telegram.language),
            alert_chats=self.config.all_alert_chat_ids(),
            fallback_chat=self.config.telegram.alert_fallback_chat_id,
            attach_chart=self._chart_sender(notifier),
        )
        self.alerts.on_enqueued = self.delivery.wake
        await self.prune_history()
        self.housekeeping = asyncio.create_task(self._housekeeping(), name="store-retention")
        if self.history is not None:
            self.compaction = asyncio.create_task(self._compaction(), name="history-compaction")
        await self.delivery.start()
        await self.monitor.start()
        if self.config.metrics.host is not None:
            self.metrics_server = MetricsServer(
                self.config.metrics.host,
                self.config.metrics.port,
                self.render_metrics,
                health=self.health,
            )
            await self.metrics_server.start()
        if self.config.health.host is not None:
            self.health_server = MetricsServer(
                self.config.health.host, self.config.health.port, None, health=self.health
            )
            await self.health_server.start()

    async def render_metrics(self) -> str:
        """The Prometheus exposition, with the outbox and delivery figures refreshed."""
        self.metrics.set("replbot_alert_messages_pending", await self.alert_store.pending_count())
        if self.delivery is not None:
            self.metrics.set("replbot_alert_messages_sent_total", self.delivery.sent)
            self.metrics.set("replbot_alert_send_failures_total", self.delivery.failures)
            delivery_gauges(self.metrics, self.delivery)
        return self.metrics.exposition()

    async def prune_history(self) -> tuple[int, int]:
        """Retention: delete sent alert messages and resolved alerts older than
        ``monitor.retention_days``. The audit log is never pruned."""
        days = self.config.monitor.retention_days
        before = self.services.clock.time() - days * DAY_S
        messages, alerts = await self.alert_store.prune_history(before)
        if messages or alerts:
            log.info(
                "retention: deleted %d sent alert message(s) and %d resolved alert(s) "
                "older than %g days",
                messages,
                alerts,
                days,
            )
        return messages, alerts

    def _chart_sender(
        self, notifier: Notifier
    ) -> Callable[[int, int | None, ChartRef, int], Awaitable[None]] | None:
        """What sends the small chart under an alert (None: charts off, or a notifier that
        cannot send pictures)."""
        charts = self.charts
        if charts is None or not self.config.monitor.alert_charts:
            return None
        if not isinstance(notifier, PhotoNotifier):
            return None
        return alert_chart_sender(self.config, charts, notifier)

    async def compact_history(self) -> tuple[int, int]:
        """Downsample the monitor history (minutes after 6 h, nothing after 7 days)."""
        if self.history is None:
            return 0, 0
        return await self.history.compact(self.services.clock.time())

    async def _compaction(self) -> None:
        while True:
            try:
                await self.compact_history()
            except Exception:  # the history must never stop the bot
                log.exception("history: downsampling the monitor history failed")
            await asyncio.sleep(HISTORY_COMPACT_EVERY_S)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_EVERY_S)
            try:
                await self.prune_history()
            except Exception:  # retention must never stop the bot
                log.exception("retention: pruning the alert store failed")

    async def health(self) -> tuple[bool, str]:
        """(healthy, JSON body) for ``GET /healthz``: the monitor's rounds advance and the
        outbox drains (answering at all shows that the event loop runs)."""
        settings = self.config.monitor
        oldest = await self.alert_store.oldest_pending_at()
        clock = self.services.clock
        report = evaluate_health(
            HealthInputs(
                monitor_enabled=bool(self.monitor.clusters),
                monitor_running=self.monitor.running,
                round_ages=self.monitor.round_ages(),
                stale_after_s=stale_after(settings.interval_s, settings.timeout_s),
                outbox_pending=await self.alert_store.pending_count(),
                oldest_pending_age_s=None if oldest is None else max(0.0, clock.time() - oldest),
                outbox_stuck_after_s=outbox_stuck_after(settings.send_retry_max_s),
                poll_age_s=None
                if self.polling_since is None
                else clock.monotonic() - (self.last_poll_at or self.polling_since),
                polls_ok=self.polls_ok,
            )
        )
        return report.ok, report.json()

    async def stop_monitor(self) -> None:
        """Stop polling and delivering (unsent messages stay in the outbox for the next run)."""
        if self.compaction is not None:
            self.compaction.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.compaction
            self.compaction = None
        if self.housekeeping is not None:
            self.housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.housekeeping
            self.housekeeping = None
        if self.metrics_server is not None:
            await self.metrics_server.stop()
            self.metrics_server = None
        if self.health_server is not None:
            await self.health_server.stop()
            self.health_server = None
        await self.monitor.stop()
        if self.delivery is not None:
            self.alerts.on_enqueued = None
            await self.delivery.stop(grace_s=self.config.monitor.send_timeout_s)
            self.delivery = None

    async def close(self) -> None:
        """Stop the monitor, interrupt running rebuilds (state kept for the next start), close
        the databases."""
        await self.stop_monitor()
        if self.services.repair is not None:
            await self.services.repair.shutdown()
        await self.services.rebuild.shutdown()
        await self.postgres.close()
        await self.jobs.close()
        if self.slot_store is not None:
            await self.slot_store.close()
        await self.alert_store.close()
        if self.history is not None:
            await self.history.close()
        if self.languages is not None:
            await self.languages.close()
        await self.audit.close()


async def open_runtime(
    config: AppConfig, redactor: Redactor | None = None, clock: Clock | None = None
) -> Runtime:
    """Open the adapters and build the services and dispatcher for ``config``.

    The monitor is built but not started: :meth:`Runtime.start_monitor` does that once a
    transport can deliver its messages.
    """
    redact = redactor or redactor_for(config)
    clock = clock or SystemClock()
    audit_key, _ = resolve_audit_key(config.audit, create=True)
    redact.add(audit_key.reveal())  # a key made beside the database is known only now
    install_redaction(redact)
    audit = SqliteAuditLog(
        config.audit.path, audit_key, redact=redact, anchor_every=config.audit.anchor_every
    )
    await audit.open()
    jobs = SqliteJobStore(config.audit.path)
    await jobs.open()
    alert_store = SqliteAlertStore(config.audit.path)
    languages = SqliteLanguageStore(config.audit.path)
    await languages.open()
    await alert_store.open()
    metrics = Metrics()
    history = SqliteHistoryStore(config.audit.path)
    await history.open()
    charts = ChartService(config, history, MatplotlibCharts(), clock)
    renderer = AlertRenderer(
        config.monitor.mute_button_s,
        repair_target=lambda alert: repair_target(config, alert),
        charts=config.monitor.alert_charts,
        languages={c.name: c.language for c in config.clusters if c.language},
        default_language=config.telegram.language,
    )
    alerts = AlertService(config, alert_store, renderer, clock)
    await alerts.load()  # /alerts shows what fires even before (or without) the monitor
    metrics.add_collector(lambda: _alert_gauges(metrics, alerts))
    known_commands = {*COMMANDS, *ACTIONS, "alert", "button"}
    postgres = PsycopgPostgres(config.query_timeout_s)
    # "local" nodes (the demo) run commands on this host, as the PostgreSQL OS user if root.
    shells = RoutingConnector(LocalConnector("postgres" if os.geteuid() == 0 else None))
    rebuild = RebuildService(config, postgres, shells, jobs, audit, clock, redact)
    slot_overrides = SlotOverrides()  # slots attached/detached from the chat, for every reader
    slot_store = SqliteSlotOverrideStore(config.audit.path)
    await slot_store.open()
    for cluster_name, node_name, slot_name in await slot_store.load():
        slot_overrides.set(cluster_name, node_name, slot_name)
    repair = RepairService(config, postgres, shells, jobs, audit, clock, rebuild, redact)
    monitor = MonitorService(
        config,
        PsycopgMonitorProbe(config.monitor.timeout_s),
        alerts,
        clock,
        metrics,
        rebuilding=lambda cluster: {
            **rebuild.running_jobs(cluster),
            **repair.running_jobs(cluster),
        },
        overrides=slot_overrides,
        history=history,
    )
    services = Services(
        config=config,
        authz=Authorizer(config.users, config.telegram.allowed_chat_ids),
        replication=ReplicationService(config, postgres, slot_overrides),
        confirmations=ConfirmationService(clock, config.telegram.confirm_timeout_s),
        rebuild=rebuild,
        audit=CountingAuditLog(audit, metrics, known_commands),
        clock=clock,
        alerts=alerts,
        monitor=monitor,
        slotless=SlotlessService(
            config.clusters,
            postgres,
            slot_overrides,
            clock,
            shells=shells,
            jobs=jobs,
            store=slot_store,
        ),
        repair=repair,
        charts=charts,
        languages=languages,
    )
    return Runtime(
        config,
        services,
        Dispatcher(services, COMMANDS, ACTIONS),
        audit,
        jobs,
        postgres,
        alert_store,
        alerts,
        monitor,
        metrics,
        history,
        charts,
        slot_store=slot_store,
        languages=languages,
    )


def delivery_gauges(metrics: Metrics, delivery: DeliveryService) -> None:
    """Refusing chats, chat migrations and token refusals of ``delivery`` into ``metrics``."""
    metrics.clear("replbot_alert_chat_refusing")
    for chat in delivery.watched_chats():
        metrics.set("replbot_alert_chat_refusing", int(chat in delivery.refusing), chat=str(chat))
    for chat, count in delivery.refusals.items():
        metrics.set("replbot_alert_chat_refusals_total", count, chat=str(chat))
    metrics.set("replbot_alert_chat_migrations_total", delivery.migrations)
    metrics.set("replbot_alert_token_rejected", int(delivery.token_rejected))
    metrics.set("replbot_alert_token_rejections_total", delivery.token_rejections)


def _alert_gauges(metrics: Metrics, alerts: AlertService) -> None:
    metrics.clear("replbot_alerts_firing")
    for (cluster, severity), count in alerts.counts().items():
        metrics.set("replbot_alerts_firing", count, cluster=cluster, severity=severity.value)


def command_menu(language: str = "en", role: Role | None = None) -> dict[str, str]:
    """Command name -> summary in ``language``, for Telegram's setMyCommands; with ``role``,
    only the commands that role may run."""
    from handlers import i18n
    from handlers.admin import private_menu

    with i18n.language(language):
        return private_menu(COMMANDS.values(), role)


def user_menus(
    config: AppConfig, chosen: Mapping[int, str] | None = None
) -> dict[int, dict[str, str]]:
    """Each configured user's private-chat menu: their role's commands in their language (the
    one they chose with /lang, from ``chosen``, else ``users[].language``, else
    ``telegram.language``)."""
    chosen = chosen or {}
    return {
        user.id: command_menu(
            chosen.get(user.id) or user.language or config.telegram.language, user.role
        )
        for user in config.users
    }

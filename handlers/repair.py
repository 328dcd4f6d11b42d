"""/repair NODE [CLUSTER] [--dry-run]: diagnose a replica, propose the cheapest safe path,
run it after a confirmation bound to the plan's digest; and the alerts' Repair button."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.config import AppConfig
from bot.errors import InvalidInput, PermissionDenied, RebuildRefused
from bot.models import Alert, AlertRule, NodeRole, RebuildState, Role
from bot.phrases import Phrase
from bot.services.repair.models import PathName, RepairProgress
from bot.services.repair.service import PlanChanged, RepairService
from handlers import parsing, render
from handlers import rebuild as rebuild_handlers
from handlers.base import Button, Chat, CommandContext, HandlerGroup, Purpose, Reply
from handlers.i18n import N_

group = HandlerGroup()
REPAIR_ALERT_RULES = frozenset(
    {
        AlertRule.NOT_STREAMING,
        AlertRule.NODE_DOWN,
        AlertRule.SLOT_INACTIVE,
        AlertRule.SLOT_AT_RISK,
        AlertRule.ROLE_MISMATCH,  # a replica promoted by mistake: rewind
        AlertRule.SLOTLESS_WAL,
    }
)


def repair_args(args: list[str]) -> tuple[str, str | None, bool]:
    """(node, cluster, dry_run) of ``/repair``; InvalidInput otherwise."""
    words = [a for a in args if a not in ("--dry-run", "--or-full")]
    if len(words) not in (1, 2) or any(w.startswith("-") for w in words):
        raise InvalidInput(Phrase.of("error.usage", usage=render.REPAIR_USAGE))
    node = words[0]
    cluster = parsing.cluster_name(words[1]) if len(words) == 2 else None
    return node, cluster, "--dry-run" in args


def or_full(args: list[str]) -> bool:
    """``--or-full``: a rewind that fails goes on as a full copy (the approval says so)."""
    return "--or-full" in args


def _role_with(args: list[str]) -> tuple[Role, str]:
    """A dry run is for operators; a repair needs an admin."""
    if repair_args(args)[2]:
        return Role.OPERATOR, "/repair --dry-run"
    return Role.ADMIN, "/repair"


def repair_target(config: AppConfig, alert: Alert) -> str | None:
    """The replica an alert is about, if it may be repaired (slot alerts: the slot's user)."""
    if alert.rule not in REPAIR_ALERT_RULES:
        return None
    cluster = next((c for c in config.clusters if c.name == alert.cluster), None)
    if cluster is None:
        return None
    for node in cluster.nodes:
        if node.role is not NodeRole.REPLICA:
            continue
        if alert.rule in (AlertRule.SLOT_INACTIVE, AlertRule.SLOT_AT_RISK):
            if node.slot == alert.subject:
                return node.name
        elif node.name == alert.node:
            return node.name
    return None


def _service(ctx: CommandContext) -> RepairService:
    service = ctx.services.repair
    if service is None:
        raise InvalidInput(Phrase.of("error.repair.off"))
    return service


@group.command(
    "repair",
    Role.OPERATOR,
    "diagnose a replica and mend it the cheapest safe way",
    render.REPAIR_USAGE,
    changes_state=False,
    role_with=_role_with,
    purpose=Purpose.REPAIR,
    example="/repair pg2 --dry-run",
    role_note=N_("an admin carries the repair out"),
)
async def repair(ctx: CommandContext) -> None:
    """Diagnosis and proposal; for admins, a confirmation of the chosen plan."""
    node, cluster, dry_run = repair_args(ctx.args)
    ctx.services.authz.require(ctx.user, *_role_with(ctx.args))
    await propose(ctx, node, cluster, dry_run, or_full(ctx.args))


async def propose(
    ctx: CommandContext, node: str, cluster: str | None, dry_run: bool, full_fallback: bool = False
) -> None:
    """Post the proposal; unless a dry run, with the confirmation (or the /rebuild offer)."""
    service = _service(ctx)
    proposal = await service.diagnose(node, cluster, or_full=full_fallback)
    ctx.audit_note = (
        f"{'dry run: ' if dry_run else ''}"
        f"chose {proposal.chosen.value if proposal.chosen else 'nothing'}"
    )
    await ctx.chat.send(Reply(render.repair_proposal(proposal, dry_run)))
    diag = proposal.diagnosis
    if proposal.chosen is PathName.FULL:
        await ctx.chat.send(Reply(render.repair_full_needed(diag.node)))
        if dry_run:
            report, full = await ctx.services.rebuild.preflight(diag.node, diag.cluster)
            await ctx.chat.send(Reply(render.rebuild_dry_run(report, full)))
        else:
            await rebuild_handlers.request_rebuild(ctx, diag.node, diag.cluster)
        return
    plan = proposal.plan
    if dry_run or plan is None:
        return
    holder = await ctx.services.rebuild.lock_holder(diag.cluster, diag.node)
    if holder is not None:
        raise RebuildRefused(
            render.rebuild_busy_phrase(
                holder, ctx.services.rebuild.progress_of(diag.cluster, diag.node)
            )
        )
    second = ctx.services.config.rebuild.require_second_approver
    pending = ctx.services.confirmations.issue(
        ctx.user.id,
        "repair",
        {
            "node": plan.node,
            "cluster": plan.cluster,
            "requested_by": str(ctx.user.id),
            "tag": proposal.tag,
            "plan": proposal.digest,
            "or_full": "1" if full_fallback else "",
        },
        other_user=second,
    )
    ttl = ctx.services.config.telegram.confirm_timeout_s
    ctx.audit_note += "; confirmation requested"
    await ctx.chat.send(
        Reply(
            render.repair_confirm(plan, ttl, second),
            buttons=(
                Button(render.button_repair(plan.node), f"cf:{pending.nonce}"),
                Button(render.button_cancel(), f"cx:{pending.nonce}"),
            ),
        )
    )


class RepairMessage:
    """The repair's progress in one message edited in place; a new message at the end."""

    def __init__(self, chat: Chat, interval_s: float, monotonic: Callable[[], float]) -> None:
        self._chat = chat
        self._message_id: int | None = None
        self._interval = interval_s
        self._clock = monotonic
        self._lock = asyncio.Lock()
        self._last = ""
        self._last_at = float("-inf")

    async def __call__(self, progress: RepairProgress) -> None:
        text = render.repair_progress(progress)
        final = progress.state != RebuildState.RUNNING.value
        now = self._clock()
        if text == self._last or (not final and now - self._last_at < self._interval):
            return
        self._last, self._last_at = text, now
        async with self._lock:
            if self._message_id is None:
                self._message_id = await self._chat.send(Reply(text))
            else:
                await self._chat.edit(self._message_id, Reply(text))
        if final:
            await self._chat.send(Reply(text.split("\n", 1)[0]))


@group.action("repair", Role.ADMIN, changes_state=True)
async def repair_confirmed(ctx: CommandContext, params: dict[str, str]) -> None:
    """The confirmation was pressed: compute the plan again; run it only if unchanged."""
    node, cluster = params["node"], params["cluster"]
    ctx.audit_args = f"{node} {cluster}"
    sink = RepairMessage(
        ctx.chat, ctx.services.config.rebuild.progress_interval_s, ctx.services.clock.monotonic
    )
    try:
        job, plan = await _service(ctx).start(
            node,
            cluster,
            params["tag"],
            params["plan"],
            int(params.get("requested_by", ctx.user.id)),
            ctx.user.id,
            sink,
            or_full=params.get("or_full") == "1",
        )
    except PlanChanged as exc:
        ctx.audit_note = "plan changed since it was shown; not run"
        await ctx.chat.send(Reply(render.repair_plan_changed(node, exc.diff)))
        raise
    ctx.audit_note = f"job {job.id} ({plan.kind}) started"
    if ctx.request.message_id is not None:
        await ctx.chat.edit(
            ctx.request.message_id, Reply(render.repair_confirmed(plan, ctx.user.name))
        )


async def press_repair(ctx: CommandContext, alert: Alert) -> None:
    """An alert's Repair button: the diagnosis and proposal, with a confirmation for admins."""
    node = repair_target(ctx.services.config, alert)
    if node is None:
        raise InvalidInput(Phrase.of("error.repair.alert", alert=alert.id))
    ctx.audit_args = f"#{alert.id} {alert.cluster}/{node}"
    if ctx.user.role is None or ctx.user.role < Role.ADMIN:
        raise PermissionDenied(Phrase.of("error.repair.admin_only", node=node))
    await propose(ctx, node, alert.cluster, dry_run=False)

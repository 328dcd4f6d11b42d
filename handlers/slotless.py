"""/attachslot and /detachslot: give a replica without a slot one, or take it away again.

Both show a plan first and run only after a confirmation bound to the plan's digest; at the
press the plan is computed again from fresh state and a different one is refused.
"""

from __future__ import annotations

from bot.errors import InvalidInput, ReplbotError, SlotChangeRefused
from bot.models import Role
from bot.phrases import Phrase
from bot.services.replication import validate_slot_name
from bot.services.slotless import SlotChangeOutcome, SlotlessService
from handlers import parsing, render
from handlers.base import Button, CommandContext, HandlerGroup, Purpose, Reply
from handlers.i18n import N_

group = HandlerGroup()

ATTACH_USAGE = "/attachslot NODE [SLOT] [cluster] [--dry-run]"
DETACH_USAGE = "/detachslot NODE [cluster]"
DRY_RUN = "--dry-run"


def attach_args(args: list[str], clusters: list[str]) -> tuple[str, str | None, str | None, bool]:
    """(node, slot, cluster, dry_run) of ``/attachslot``.

    With two words after the node, they are SLOT and cluster; with one, it is the cluster when
    a cluster of that name is configured, else the slot.
    """
    dry_run = DRY_RUN in args
    words = [a for a in args if a != DRY_RUN]
    if not words or len(words) > 3 or any(a.startswith("--") for a in words):
        raise InvalidInput(Phrase.of("error.usage", usage=ATTACH_USAGE))
    node = parsing.cluster_name(words[0])  # node names follow the same syntax
    slot: str | None = None
    cluster: str | None = None
    if len(words) == 3:
        slot, cluster = validate_slot_name(words[1]), parsing.cluster_name(words[2])
    elif len(words) == 2:
        if words[1] in clusters:
            cluster = words[1]
        else:
            slot = validate_slot_name(words[1])
    return node, slot, cluster, dry_run


def detach_args(args: list[str]) -> tuple[str, str | None]:
    """(node, cluster) of ``/detachslot``."""
    if not args or len(args) > 2:
        raise InvalidInput(Phrase.of("error.usage", usage=DETACH_USAGE))
    node = parsing.cluster_name(args[0])
    return node, parsing.cluster_name(args[1]) if len(args) == 2 else None


def _attach_role(args: list[str]) -> tuple[Role, str]:
    """A dry run is for operators; attaching needs an admin."""
    if DRY_RUN in args:
        return Role.OPERATOR, "/attachslot --dry-run"
    return Role.ADMIN, "/attachslot"


def _service(ctx: CommandContext) -> SlotlessService:
    service = ctx.services.slotless
    if service is None:
        raise ReplbotError(Phrase.of("error.slotless.off"))
    return service


class _SlotChangeFailed(SlotChangeRefused):
    """A run failed; its outcome was already sent, so the dispatcher adds a short line.

    ``audit_note`` is the audit row's reason (the failed step, its error, what was undone).
    """

    def __init__(self, step: str, audit_note: str) -> None:
        super().__init__(Phrase.of("error.slotless.failed_at", step=step))
        self.audit_note = audit_note


@group.command(
    "attachslot",
    Role.OPERATOR,
    "give a replica without a slot a physical slot (asks to confirm)",
    ATTACH_USAGE,
    changes_state=False,  # asking changes nothing; the confirmed action does
    role_with=_attach_role,
    purpose=Purpose.SLOTS,
    example="/attachslot pg3 --dry-run",
    role_note=N_("an admin attaches it"),
)
async def attachslot(ctx: CommandContext) -> None:
    """Dry run (operator) or, for admins, the plan and its confirmation button."""
    service = _service(ctx)
    node, slot, cluster, dry_run = attach_args(ctx.args, service.cluster_names())
    ctx.services.authz.require(ctx.user, *_attach_role(ctx.args))  # defence in depth
    planned = await service.attach_plan(node, slot, cluster)
    if dry_run:
        ctx.audit_note = f"dry run: slot {planned.slot}"
        await ctx.chat.send(Reply(render.attachslot_dry_run(planned)))
        return
    second = ctx.services.config.rebuild.require_second_approver
    pending = ctx.services.confirmations.issue(
        ctx.user.id,
        "attachslot",
        {
            "node": planned.plan.node,
            "cluster": planned.plan.cluster,
            "slot": planned.slot,
            "plan": planned.digest,
            "requested_by": str(ctx.user.id),
        },
        other_user=second,
    )
    ctx.audit_note = f"slot {planned.slot}: confirmation requested"
    ttl = ctx.services.config.telegram.confirm_timeout_s
    await ctx.chat.send(
        Reply(
            render.attachslot_confirm(planned, ttl, second),
            buttons=(
                Button(render.button_attach_slot(planned.plan.node), f"cf:{pending.nonce}"),
                Button(render.button_cancel(), f"cx:{pending.nonce}"),
            ),
        )
    )


@group.action("attachslot", Role.ADMIN, changes_state=True)
async def attachslot_confirmed(ctx: CommandContext, params: dict[str, str]) -> None:
    """Re-check the state, then create the slot, point the replica at it and verify."""
    node, cluster, slot = params["node"], params["cluster"], params["slot"]
    ctx.audit_args = f"{node} {slot} {cluster}"
    service = _service(ctx)
    requested_by = int(params.get("requested_by", ctx.user.id))
    outcome = await service.attach(node, slot, cluster, params["plan"], requested_by, ctx.user.id)
    await _report(ctx, outcome)


@group.command(
    "detachslot",
    Role.ADMIN,
    "take a replica's slot away and drop it (asks to confirm)",
    DETACH_USAGE,
    purpose=Purpose.SLOTS,
    example="/detachslot pg3",
)
async def detachslot(ctx: CommandContext) -> None:
    """The plan and its confirmation button."""
    service = _service(ctx)
    node, cluster = detach_args(ctx.args)
    planned = await service.detach_plan(node, cluster)
    second = ctx.services.config.rebuild.require_second_approver
    pending = ctx.services.confirmations.issue(
        ctx.user.id,
        "detachslot",
        {
            "node": planned.plan.node,
            "cluster": planned.plan.cluster,
            "plan": planned.digest,
            "requested_by": str(ctx.user.id),
        },
        other_user=second,
    )
    ctx.audit_note = f"slot {planned.slot}: confirmation requested"
    ttl = ctx.services.config.telegram.confirm_timeout_s
    await ctx.chat.send(
        Reply(
            render.detachslot_confirm(planned, ttl, second),
            buttons=(
                Button(render.button_detach_slot(planned.plan.node), f"cf:{pending.nonce}"),
                Button(render.button_cancel(), f"cx:{pending.nonce}"),
            ),
        )
    )


@group.action("detachslot", Role.ADMIN, changes_state=True)
async def detachslot_confirmed(ctx: CommandContext, params: dict[str, str]) -> None:
    """Re-check, clear primary_slot_name, wait for the slot to be released, drop it, verify."""
    node, cluster = params["node"], params["cluster"]
    ctx.audit_args = f"{node} {cluster}"
    requested_by = int(params.get("requested_by", ctx.user.id))
    outcome = await _service(ctx).detach(node, cluster, params["plan"], requested_by, ctx.user.id)
    await _report(ctx, outcome)


async def _report(ctx: CommandContext, outcome: SlotChangeOutcome) -> None:
    """Replace the question with the outcome; a failed run is audited as refused with why."""
    text = render.slot_change_outcome(outcome)
    if ctx.request.message_id is not None:
        await ctx.chat.edit(ctx.request.message_id, Reply(text))
    else:
        await ctx.chat.send(Reply(text))
    if outcome.ok:
        ctx.audit_note = f"slot {outcome.slot}: " + ", ".join(outcome.done)
        return
    note = f"failed at {outcome.failed_step}: {outcome.error}"
    if outcome.undone:
        note += "; undone: " + ", ".join(outcome.undone)
    raise _SlotChangeFailed(outcome.failed_step or "?", note)

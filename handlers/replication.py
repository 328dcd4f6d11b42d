"""/status, /slots, /check, /createslot, /dropslot."""

from __future__ import annotations

from bot.models import Role
from handlers import parsing, render
from handlers.base import Button, CommandContext, HandlerGroup, Purpose, Reply

group = HandlerGroup()


@group.command(
    "status",
    Role.VIEWER,
    "primary and replicas: state, LSNs, lag",
    "/status [cluster]",
    purpose=Purpose.WATCH,
    example="/status main",
)
async def status(ctx: CommandContext) -> None:
    """Show every replica's state and lag, as seen from the primary and the replica."""
    cluster = parsing.optional_cluster(ctx.args)
    snapshot = await ctx.services.replication.status(cluster)
    await ctx.chat.send(Reply(render.status(snapshot)))


@group.command(
    "slots",
    Role.VIEWER,
    "replication slots and the WAL they retain",
    "/slots [cluster]",
    purpose=Purpose.SLOTS,
    example="/slots main",
)
async def slots(ctx: CommandContext) -> None:
    """List the primary's replication slots."""
    cluster = parsing.optional_cluster(ctx.args)
    snapshot = await ctx.services.replication.slots(cluster)
    await ctx.chat.send(Reply(render.slots(snapshot)))


@group.command(
    "check",
    Role.VIEWER,
    "replication prerequisites of the runbook",
    "/check [cluster]",
    purpose=Purpose.WATCH,
    example="/check main",
)
async def check(ctx: CommandContext) -> None:
    """Check the primary's and replicas' settings against the runbook."""
    cluster = parsing.optional_cluster(ctx.args)
    result = await ctx.services.replication.check(cluster)
    await ctx.chat.send(Reply(render.check(result)))


@group.command(
    "createslot",
    Role.OPERATOR,
    "create a physical slot on the primary",
    "/createslot NAME [cluster]",
    changes_state=True,
    purpose=Purpose.SLOTS,
    example="/createslot replica4",
)
async def createslot(ctx: CommandContext) -> None:
    """Create a physical replication slot."""
    slot, cluster = parsing.slot_and_cluster(ctx.args, "/createslot NAME [cluster]")
    cluster_name, node = await ctx.services.replication.create_slot(slot, cluster)
    ctx.audit_note = f"created on {cluster_name}/{node}"
    await ctx.chat.send(Reply(render.slot_created(slot, cluster_name, node)))


@group.command(
    "dropslot",
    Role.ADMIN,
    "drop an inactive slot (asks to confirm)",
    "/dropslot NAME [cluster]",
    purpose=Purpose.SLOTS,
    example="/dropslot old_slot",
)
async def dropslot(ctx: CommandContext) -> None:
    """Ask the requester to confirm dropping an inactive slot."""
    slot, cluster = parsing.slot_and_cluster(ctx.args, "/dropslot NAME [cluster]")
    cluster_name, info = await ctx.services.replication.slot_for_drop(slot, cluster)
    node = ctx.services.replication.one_cluster(cluster_name).primary.name
    second = ctx.services.config.rebuild.require_second_approver
    pending = ctx.services.confirmations.issue(
        ctx.user.id, "dropslot", {"slot": slot, "cluster": cluster_name}, other_user=second
    )
    ttl = ctx.services.config.telegram.confirm_timeout_s
    ctx.audit_note = "confirmation requested"
    await ctx.chat.send(
        Reply(
            render.confirm_drop_slot(info, cluster_name, node, ttl, second),
            buttons=(
                Button(render.button_drop_slot(slot), f"cf:{pending.nonce}"),
                Button(render.button_cancel(), f"cx:{pending.nonce}"),
            ),
        )
    )


@group.action("dropslot", Role.ADMIN, changes_state=True)
async def dropslot_confirmed(ctx: CommandContext, params: dict[str, str]) -> None:
    """Drop the slot once its requester (or, with a second approver, another admin) pressed."""
    slot, cluster = params["slot"], params["cluster"]
    ctx.audit_args = f"{slot} {cluster}"
    cluster_name, node = await ctx.services.replication.drop_slot(slot, cluster)
    ctx.audit_note = f"dropped on {cluster_name}/{node}"
    text = render.slot_dropped(slot, cluster_name, node)
    if ctx.request.message_id is not None:
        await ctx.chat.edit(ctx.request.message_id, Reply(text))
    else:
        await ctx.chat.send(Reply(text))

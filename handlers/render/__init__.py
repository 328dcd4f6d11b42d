"""Pure functions: domain snapshots -> Telegram-HTML text. The only place replies are worded.

One module per feature; every public name is re-exported here, so callers keep writing
``from handlers import render; render.status(...)``. Every dynamic value goes through
:func:`esc`; a reply is split at line boundaries with tags closed and reopened
(:func:`split_message`). The words come from the catalogs of :mod:`handlers.i18n`, in the
language of the reply being rendered.
"""

from handlers.render.alerts import (
    ACK_ICON as ACK_ICON,
)
from handlers.render.alerts import (
    ALARM_ICON as ALARM_ICON,
)
from handlers.render.alerts import (
    CHANGE_ICON as CHANGE_ICON,
)
from handlers.render.alerts import (
    MUTED_ICON as MUTED_ICON,
)
from handlers.render.alerts import (
    REPEAT_ICON as REPEAT_ICON,
)
from handlers.render.alerts import (
    RULE_TEXT as RULE_TEXT,
)
from handlers.render.alerts import (
    alert_acknowledged as alert_acknowledged,
)
from handlers.render.alerts import (
    alert_button_labels as alert_button_labels,
)
from handlers.render.alerts import (
    alert_chat_refusing as alert_chat_refusing,
)
from handlers.render.alerts import (
    alert_header as alert_header,
)
from handlers.render.alerts import (
    alert_headline as alert_headline,
)
from handlers.render.alerts import (
    alert_muted as alert_muted,
)
from handlers.render.alerts import (
    alert_notice as alert_notice,
)
from handlers.render.alerts import (
    alert_redirected as alert_redirected,
)
from handlers.render.alerts import (
    alert_where as alert_where,
)
from handlers.render.alerts import (
    alerts_firing as alerts_firing,
)
from handlers.render.alerts import (
    alerts_unavailable as alerts_unavailable,
)
from handlers.render.alerts import (
    target_muted as target_muted,
)
from handlers.render.alerts import (
    target_unmuted as target_unmuted,
)
from handlers.render.alerts import (
    toast_alert_acknowledged as toast_alert_acknowledged,
)
from handlers.render.alerts import (
    toast_alert_muted as toast_alert_muted,
)
from handlers.render.check import (
    check as check,
)
from handlers.render.common import (
    AUDIT_FIELD_CHARS as AUDIT_FIELD_CHARS,
)
from handlers.render.common import (
    FAIL as FAIL,
)
from handlers.render.common import (
    INFO as INFO,
)
from handlers.render.common import (
    MAX_AUDIT_LINES as MAX_AUDIT_LINES,
)
from handlers.render.common import (
    MAX_SLOT_LINES as MAX_SLOT_LINES,
)
from handlers.render.common import (
    OK as OK,
)
from handlers.render.common import (
    TELEGRAM_LIMIT as TELEGRAM_LIMIT,
)
from handlers.render.common import (
    WARN as WARN,
)
from handlers.render.common import (
    button_cancel as button_cancel,
)
from handlers.render.common import (
    cancelled as cancelled,
)
from handlers.render.common import (
    code as code,
)
from handlers.render.common import (
    esc as esc,
)
from handlers.render.common import (
    failure as failure,
)
from handlers.render.common import (
    human_bytes as human_bytes,
)
from handlers.render.common import (
    human_duration as human_duration,
)
from handlers.render.common import (
    human_seconds as human_seconds,
)
from handlers.render.common import (
    internal_error as internal_error,
)
from handlers.render.common import (
    not_run_forwarded as not_run_forwarded,
)
from handlers.render.common import (
    not_run_offline as not_run_offline,
)
from handlers.render.common import (
    one_line as one_line,
)
from handlers.render.common import (
    refusal as refusal,
)
from handlers.render.common import (
    split_message as split_message,
)
from handlers.render.common import (
    to_plain_text as to_plain_text,
)
from handlers.render.common import (
    toast_cancelled as toast_cancelled,
)
from handlers.render.common import (
    toast_confirmed as toast_confirmed,
)
from handlers.render.common import (
    unknown_command as unknown_command,
)
from handlers.render.demo import (
    demo_param_lowered as demo_param_lowered,
)
from handlers.render.demo import (
    demo_replica_changed as demo_replica_changed,
)
from handlers.render.demo import (
    demo_replica_diverged as demo_replica_diverged,
)
from handlers.render.demo import (
    demo_waited as demo_waited,
)
from handlers.render.help import (
    audit as audit,
)
from handlers.render.help import (
    audit_verification as audit_verification,
)
from handlers.render.help import (
    help_text as help_text,
)
from handlers.render.help import (
    whoami as whoami,
)
from handlers.render.rebuild import (
    button_delete_old_data as button_delete_old_data,
)
from handlers.render.rebuild import (
    button_rebuild as button_rebuild,
)
from handlers.render.rebuild import (
    button_release as button_release,
)
from handlers.render.rebuild import (
    button_rollback as button_rollback,
)
from handlers.render.rebuild import (
    cleanup_done as cleanup_done,
)
from handlers.render.rebuild import (
    confirm_abandon as confirm_abandon,
)
from handlers.render.rebuild import (
    confirm_cleanup as confirm_cleanup,
)
from handlers.render.rebuild import (
    confirm_rollback as confirm_rollback,
)
from handlers.render.rebuild import (
    rebuild_abandoned as rebuild_abandoned,
)
from handlers.render.rebuild import (
    rebuild_busy_reason as rebuild_busy_reason,
)
from handlers.render.rebuild import (
    rebuild_cancel_requested as rebuild_cancel_requested,
)
from handlers.render.rebuild import (
    rebuild_confirm as rebuild_confirm,
)
from handlers.render.rebuild import (
    rebuild_confirmed as rebuild_confirmed,
)
from handlers.render.rebuild import (
    rebuild_dry_run as rebuild_dry_run,
)
from handlers.render.rebuild import (
    rebuild_interrupted as rebuild_interrupted,
)
from handlers.render.rebuild import (
    rebuild_job_changed as rebuild_job_changed,
)
from handlers.render.rebuild import (
    rebuild_nothing_to_resolve as rebuild_nothing_to_resolve,
)
from handlers.render.rebuild import (
    rebuild_plan as rebuild_plan,
)
from handlers.render.rebuild import (
    rebuild_plan_changed as rebuild_plan_changed,
)
from handlers.render.rebuild import (
    rebuild_preflight as rebuild_preflight,
)
from handlers.render.rebuild import (
    rebuild_progress as rebuild_progress,
)
from handlers.render.rebuild import (
    rebuild_rollback_started as rebuild_rollback_started,
)
from handlers.render.rebuild import (
    rebuild_started as rebuild_started,
)
from handlers.render.repair import (
    REPAIR_USAGE as REPAIR_USAGE,
)
from handlers.render.repair import (
    alert_repair_label as alert_repair_label,
)
from handlers.render.repair import (
    button_repair as button_repair,
)
from handlers.render.repair import (
    repair_button_refused as repair_button_refused,
)
from handlers.render.repair import (
    repair_confirm as repair_confirm,
)
from handlers.render.repair import (
    repair_confirmed as repair_confirmed,
)
from handlers.render.repair import (
    repair_diagnosis as repair_diagnosis,
)
from handlers.render.repair import (
    repair_full_needed as repair_full_needed,
)
from handlers.render.repair import (
    repair_plan as repair_plan,
)
from handlers.render.repair import (
    repair_plan_changed as repair_plan_changed,
)
from handlers.render.repair import (
    repair_progress as repair_progress,
)
from handlers.render.repair import (
    repair_proposal as repair_proposal,
)
from handlers.render.slotless import (
    attachslot_confirm as attachslot_confirm,
)
from handlers.render.slotless import (
    attachslot_dry_run as attachslot_dry_run,
)
from handlers.render.slotless import (
    button_attach_slot as button_attach_slot,
)
from handlers.render.slotless import (
    button_detach_slot as button_detach_slot,
)
from handlers.render.slotless import (
    detachslot_confirm as detachslot_confirm,
)
from handlers.render.slotless import (
    slot_change_confirmed as slot_change_confirmed,
)
from handlers.render.slotless import (
    slot_change_outcome as slot_change_outcome,
)
from handlers.render.slotless import (
    slot_change_plan as slot_change_plan,
)
from handlers.render.slotless import (
    slotless_alert_details as slotless_alert_details,
)
from handlers.render.slotless import (
    slotless_alert_headline as slotless_alert_headline,
)
from handlers.render.slotless import (
    slotless_alert_hint as slotless_alert_hint,
)
from handlers.render.slotless import (
    slotless_status_line as slotless_status_line,
)
from handlers.render.slots import (
    button_drop_slot as button_drop_slot,
)
from handlers.render.slots import (
    confirm_drop_slot as confirm_drop_slot,
)
from handlers.render.slots import (
    slot_created as slot_created,
)
from handlers.render.slots import (
    slot_dropped as slot_dropped,
)
from handlers.render.slots import (
    slots as slots,
)
from handlers.render.status import (
    status as status,
)

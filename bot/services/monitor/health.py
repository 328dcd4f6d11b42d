"""What ``GET /healthz`` answers: a pure decision over figures the runtime collects.

Healthy means: the process answers (the event loop runs this code at all), Telegram answered
a getUpdates recently (``replbot run`` only), every monitored cluster finished a round
recently, and the alert outbox drains. "Recently" is derived from
the configured poll interval and timeout (:func:`stale_after`), so a slow interval does not
read as an outage. Each problem is one line naming the part that is wrong; the HTTP layer
maps ``ok`` to 200 and anything else to 503.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

MIN_STALE_AFTER_S = 30.0
MIN_OUTBOX_STUCK_AFTER_S = 600.0
# getUpdates long-polls 10 s; with connect/read timeouts and a retry, a minute without one
# answered poll means the bot no longer hears its chats.
POLL_STALE_AFTER_S = 60.0


def stale_after(interval_s: float, timeout_s: float) -> float:
    """Seconds without a monitor round after which the monitor counts as stuck: three
    missed rounds (each may take the interval plus a probe timeout), at least 30 s."""
    return max(MIN_STALE_AFTER_S, 3 * (interval_s + timeout_s))


def outbox_stuck_after(send_retry_max_s: float) -> float:
    """Seconds the oldest pending alert message may wait: ten maximal back-offs, at least
    10 minutes (a 429 or a Bot API outage is waited out, not reported at once)."""
    return max(MIN_OUTBOX_STUCK_AFTER_S, 10 * send_retry_max_s)


@dataclass(frozen=True)
class HealthInputs:
    """What the runtime observed when /healthz was asked."""

    monitor_enabled: bool  # the config monitors at least one cluster
    monitor_running: bool
    round_ages: Mapping[str, float]  # cluster -> seconds since its last round
    stale_after_s: float
    outbox_pending: int
    oldest_pending_age_s: float | None
    outbox_stuck_after_s: float
    poll_age_s: float | None = None  # since the last answered getUpdates; None: no Telegram
    polls_ok: int = 0
    poll_stale_after_s: float = POLL_STALE_AFTER_S


@dataclass(frozen=True)
class HealthReport:
    """The verdict and the figures behind it."""

    problems: tuple[str, ...]
    round_ages: Mapping[str, float] = field(default_factory=dict)
    outbox_pending: int = 0
    poll_age_s: float | None = None
    polls_ok: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def json(self) -> str:
        """The response body: status, problems, monitor round ages, pending outbox rows and,
        under ``replbot run``, the Telegram polls."""
        body: dict[str, object] = {
            "status": "ok" if self.ok else "fail",
            "problems": list(self.problems),
            "monitor": {
                name: {"last_round_s": round(age, 3)}
                for name, age in sorted(self.round_ages.items())
            },
            "outbox_pending": self.outbox_pending,
        }
        if self.poll_age_s is not None:
            body["telegram"] = {
                "last_poll_s": round(self.poll_age_s, 3),
                "polls_ok": self.polls_ok,
            }
        return json.dumps(body)


def evaluate_health(inputs: HealthInputs) -> HealthReport:
    """The problems in ``inputs``, one line each (empty: healthy)."""
    problems: list[str] = []
    if inputs.poll_age_s is not None and inputs.poll_age_s > inputs.poll_stale_after_s:
        problems.append(
            f"telegram: no getUpdates answered for {inputs.poll_age_s:.0f} s "
            f"(limit {inputs.poll_stale_after_s:.0f} s)"
        )
    if inputs.monitor_enabled and not inputs.monitor_running:
        problems.append("monitor: not running")
    for name, age in sorted(inputs.round_ages.items()):
        if age > inputs.stale_after_s:
            problems.append(
                f"monitor: no round of cluster {name} for {age:.0f} s "
                f"(limit {inputs.stale_after_s:.0f} s)"
            )
    oldest = inputs.oldest_pending_age_s
    if inputs.outbox_pending and oldest is not None and oldest > inputs.outbox_stuck_after_s:
        problems.append(
            f"outbox: {inputs.outbox_pending} message(s) pending, the oldest for {oldest:.0f} s "
            f"(limit {inputs.outbox_stuck_after_s:.0f} s)"
        )
    return HealthReport(
        tuple(problems),
        dict(inputs.round_ages),
        inputs.outbox_pending,
        inputs.poll_age_s,
        inputs.polls_ok,
    )

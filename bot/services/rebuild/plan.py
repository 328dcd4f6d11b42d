"""Turn a replica's config into the exact SQL and shell commands of a rebuild.

Every path and word is quoted with :func:`shlex.quote`; start/stop commands are trusted
strings from the admin's config and run as written. The same functions produce the text a
``--dry-run`` prints and the commands the runner executes, so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import PurePath, PurePosixPath

from bot.config import ClusterConfig, NodeConfig
from bot.errors import RebuildRefused
from bot.models import RebuildPlan
from bot.phrases import Phrase
from bot.services.plans.executor import SERVER_STOPPED_EXIT, server_status_command
from bot.services.plans.model import (
    Probe,
    RemoteCommand,
    SlotChange,
    SlotOp,
    Step,
    Wait,
    action_kind,
    describe,
)
from bot.services.rebuild.rollback import RollbackAction
from bot.services.replication import STANDBY_MINIMUMS

ROLLBACK_SUFFIX = "_rb"
PROGRESS_RE = re.compile(r"(\d+)/(\d+) kB \((\d+)%\)")
# 20261201T120000_5f3a9c1e: when the plan was made, and a random token, so that two plans
# made in the same second never name the same directories.
TAG_RE = re.compile(r"[0-9]{8}T[0-9]{6}_[0-9a-f]{8}")
DIRECTORY_EXISTS_EXIT = 3
POLL_INTERVAL_S = 0.5
SLOT_RELEASE_TIMEOUT_S = 20.0
DEFAULT_VERIFY_TIMEOUT_S = 120.0


def new_tag(now: float) -> str:
    """A fresh tag for the directory names of one plan (wall-clock second + random token)."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}_{secrets.token_hex(4)}"


def parse_directories(output: str) -> dict[str, str]:
    """``Commands.directories()`` output -> {label: "device:inode"} of those that exist."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        label, _, ident = line.strip().partition(" ")
        if label in ("data", "old", "failed"):
            found[label] = ident.strip()
    return found


def q(word: str | PurePath) -> str:
    """Shell-quote one word."""
    return shlex.quote(str(word))


def require_rebuild_config(node: NodeConfig) -> None:
    """Refuse when a key the rebuild needs is missing from the node's config."""
    missing = [
        key
        for key, value in (
            ("data_dir", node.data_dir),
            ("pg_bin_dir", node.pg_bin_dir),
            ("start_command", node.start_command),
            ("stop_command", node.stop_command),
            ("replication", node.replication),
            ("slot", node.slot),
        )
        if value is None
    ]
    if node.shell == "ssh" and node.ssh is None:
        missing.append("ssh")
    if missing:
        raise RebuildRefused(
            Phrase.of("error.rebuild.missing_config", node=node.name, keys=", ".join(missing))
        )


def rollback_slot_name(slot: str) -> str:
    """The temporary copy of ``slot`` that keeps the old replica's WAL (≤ 63 characters)."""
    return slot[: 63 - len(ROLLBACK_SUFFIX)] + ROLLBACK_SUFFIX


class Commands:
    """The shell command lines for one replica (absolute binaries: no PATH over SSH)."""

    def __init__(self, node: NodeConfig, tag: str, application_name: str = "") -> None:
        require_rebuild_config(node)
        assert node.data_dir and node.pg_bin_dir and node.replication and node.slot
        self.node = node
        self.application_name = application_name or node.application_name or node.name
        self.data_dir = PurePosixPath(node.data_dir)
        self.bin = PurePosixPath(node.pg_bin_dir)
        self.old_dir = PurePosixPath(f"{self.data_dir}.replbot-old-{tag}")
        self.failed_dir = PurePosixPath(f"{self.data_dir}.replbot-failed-{tag}")
        self.slot = node.slot
        self.rollback_slot = rollback_slot_name(node.slot)
        self.replication = node.replication

    @classmethod
    def for_job(
        cls, node: NodeConfig, old_dir: str, failed_dir: str, application_name: str = ""
    ) -> Commands:
        """Commands for a job whose directory names (and name on the primary) were fixed
        when it started."""
        commands = cls(node, "job", application_name)
        commands.old_dir = PurePosixPath(old_dir)
        commands.failed_dir = PurePosixPath(failed_dir)
        return commands

    # --- preflight (read-only) ---------------------------------------------------------------

    def whoami_and_data_dir(self) -> str:
        """Prove SSH works and the data directory exists; then describe what it is.

        One round trip: after the user name, ``key=value`` lines (see :func:`parse_layout`):
        whether the data directory or its ``pg_wal`` is a symlink (and to what), whether it
        is a mount point, how many entries ``pg_tblspc`` has, and the system identifier
        ``pg_controldata`` reads from it.
        """
        data = q(self.data_dir)
        wal = q(self.data_dir / "pg_wal")
        parent = q(self.data_dir / "..")
        controldata = q(self.bin / "pg_controldata")
        probes = [
            f'echo "symlink=$(if [ -L {data} ]; then readlink -- {data}; fi)"',
            f'echo "wal_symlink=$(if [ -L {wal} ]; then readlink -- {wal}; fi)"',
            'echo "mount=$(if command -v mountpoint >/dev/null 2>&1; '
            f"then mountpoint -q {data} && echo yes; "
            f'elif [ "$(stat -c %d {data})" != "$(stat -c %d {parent})" ]; then echo yes; fi)"',
            f'echo "tablespaces=$(ls -A {q(self.data_dir / "pg_tblspc")} 2>/dev/null | wc -l)"',
            f'echo "system_identifier=$(LC_ALL=C {controldata} {data} 2>&1'
            " | sed -n 's/^Database system identifier: *//p')\"",
        ]
        return f"id -un && test -d {data} && {{ " + "; ".join(probes) + "; }"

    def identify_system(self) -> str:
        """A replication connection from the replica host to the primary (pg_hba, passfile)."""
        conninfo = self.replication.conninfo(replication="true", connect_timeout="10")
        return f"{q(self.bin / 'psql')} -X -A -t -d {q(conninfo)} -c IDENTIFY_SYSTEM"

    def free_bytes(self) -> str:
        """Free bytes on the filesystem holding the data directory's parent."""
        return f"df -P -B1 {q(self.data_dir.parent)} | tail -n 1"

    def standby_settings(self) -> str:
        """The values the replica's configuration gives the hot-standby minimums, and its
        ``primary_conninfo`` and ``cluster_name`` (the walreceiver's application_name)."""
        conf = PurePosixPath(self.node.effective_conf_dir or self.data_dir)
        postgres = q(self.bin / "postgres")
        names = (*STANDBY_MINIMUMS, "primary_conninfo", "cluster_name")
        parts = [f'echo "{name}=$({postgres} -D {q(conf)} -C {name} 2>&1)"' for name in names]
        return "; ".join(parts)

    # --- execution ---------------------------------------------------------------------------

    def stop(self) -> str:
        """The admin's stop command."""
        assert self.node.stop_command
        return self.node.stop_command

    def start(self) -> str:
        """The admin's start command."""
        assert self.node.start_command
        return self.node.start_command

    def server_status(self) -> str:
        """pg_ctl status: exit 0 running, 3 not running, 4 no data directory."""
        return server_status_command(self.node)

    def start_unless_running(self) -> str:
        """The admin's start command, unless a server already runs on the data directory."""
        return f"{self.server_status()} >/dev/null || ( {self.start()} )"

    def stop_unless_stopped(self) -> str:
        """The admin's stop command; its failure counts only if the server still runs."""
        return f"( {self.stop()} ) || {{ {self.server_status()} >/dev/null; test $? -eq 3; }}"

    def move_aside(self) -> str:
        """Rename the data directory (never delete); refuse if the target exists."""
        return _guarded_move(self.data_dir, self.old_dir)

    def data_dir_id(self) -> str:
        """ "device:inode" of the data directory (a rename keeps it)."""
        return f"stat -c %d:%i -- {q(self.data_dir)}"

    def basebackup(self) -> str:
        """pg_basebackup with the runbook's options and a fast checkpoint.

        ``-R`` copies the connection's options into ``primary_conninfo``: the application_name
        given here is the one the new replica streams under (synchronous_standby_names).
        """
        conninfo = self.replication.conninfo(application_name=self.application_name)
        words = [
            str(self.bin / "pg_basebackup"),
            f"--pgdata={self.data_dir}",
            "--wal-method=stream",
            "--write-recovery-conf",
            f"--slot={self.slot}",
            "--checkpoint=fast",
            "--progress",
            "--verbose",
            "--no-clean",  # on error pg_basebackup would delete its partial copy: we keep it
            f"--dbname={conninfo}",
        ]
        if self.node.max_rate:
            words.append(f"--max-rate={self.node.max_rate}")
        return " ".join(q(w) for w in words)

    def restore_files(self) -> str | None:
        """Copy replica-local files (e.g. its postgresql.conf) from the old directory."""
        if not self.node.keep_files:
            return None
        parts = []
        for name in self.node.keep_files:
            old, new = q(self.old_dir / name), q(self.data_dir / name)
            parts.append(f"if [ -e {old} ]; then cp -p -- {old} {new}; fi")
        return "; ".join(parts)

    def kill_leftover_basebackup(self) -> str:
        """TERM any pg_basebackup of ours still writing into the data directory."""
        pattern = "pg_basebackup.*--pgdata=" + _ere_escape(str(self.data_dir)) + "( |$)"
        return f'pkill -TERM -u "$(id -u)" -f {q(pattern)}; sleep 0.5; true'

    def leftover_basebackup(self) -> str:
        """PIDs of pg_basebackup processes of ours writing into the data directory."""
        pattern = "pg_basebackup.*--pgdata=" + _ere_escape(str(self.data_dir)) + "( |$)"
        return f'pgrep -u "$(id -u)" -f {q(pattern)} || true'

    def directories(self) -> str:
        """Which of the data, old and failed directories exist: "label device:inode" lines."""
        return "; ".join(
            f'if [ -e {q(d)} ]; then echo {q(label)} "$(stat -c %d:%i -- {q(d)})"; fi'
            for label, d in (
                ("data", self.data_dir),
                ("old", self.old_dir),
                ("failed", self.failed_dir),
            )
        )

    def set_aside_new(self) -> str:
        """Rollback: move the new (partial) copy aside as .failed."""
        return _guarded_move(self.data_dir, self.failed_dir)

    def put_back_old(self) -> str:
        """Rollback: move the old directory back into place."""
        return _guarded_move(self.old_dir, self.data_dir)

    def remove_old(self) -> str:
        """Cleanup after a successful rebuild: the only deletion replbot ever runs."""
        return f"rm -rf -- {q(self.old_dir)}"

    def server_log_tail(self) -> str:
        """The newest lines of the server's log (the reason a start failed)."""
        if self.node.log_file is not None:
            return f"tail -n 15 {q(self.node.log_file)}; true"
        data = q(self.data_dir)
        return (
            f"for f in $(ls -t {data}/log/* {data}/pg_log/* 2>/dev/null | head -n 1); "
            'do tail -n 15 "$f"; done; true'
        )


def build_plan(
    cluster: ClusterConfig,
    node: NodeConfig,
    tag: str,
    slot_missing: bool,
    previous_job: int = 0,
    seen_application_name: str = "",
    sync_state: str = "",
    verify_timeout_s: float = DEFAULT_VERIFY_TIMEOUT_S,
) -> RebuildPlan:
    """The ordered steps of a rebuild of ``node``, exactly as they will run.

    The new replica streams under the configured ``application_name``, else the one it was
    seen streaming under (``seen_application_name``), else its node name; verify requires
    that name on the primary and, for a synchronous standby, the same ``sync_state``.
    """
    cmd = Commands(node, tag, node.application_name or seen_application_name)
    host = node.ssh.host if node.ssh else "localhost"
    steps: list[Step] = []
    if slot_missing:
        steps.append(
            Step(
                "create_slot",
                Phrase.of("step.create_slot", slot=cmd.slot, primary=cluster.primary.name),
                SlotChange(SlotOp.CREATE, cmd.slot),
            )
        )
    steps += [
        Step(
            "stop", Phrase.of("step.stop", node=node.name), RemoteCommand(cmd.stop_unless_stopped())
        ),
        Step(
            "check_stopped",
            Phrase.of("step.check_stopped"),
            RemoteCommand(cmd.server_status(), ok_exits=(SERVER_STOPPED_EXIT,)),
        ),
        Step(
            "slot_released",
            Phrase.of("step.slot_released", slot=cmd.slot),
            Wait(Probe.SLOT_INACTIVE, SLOT_RELEASE_TIMEOUT_S, POLL_INTERVAL_S, (cmd.slot,)),
        ),
        Step(
            "keep_wal",
            Phrase.of("step.keep_wal", slot=cmd.rollback_slot),
            SlotChange(SlotOp.COPY, cmd.rollback_slot, source=cmd.slot),
        ),
        Step(
            "move_aside",
            Phrase.of("step.move_aside", path=str(cmd.old_dir)),
            RemoteCommand(cmd.move_aside()),
        ),
        Step(
            "basebackup",
            Phrase.of("step.basebackup", primary=cluster.primary.name),
            RemoteCommand(cmd.basebackup(), stream=True),
        ),
    ]
    restore = cmd.restore_files()
    if restore:
        steps.append(Step("restore_files", Phrase.of("step.restore_files"), RemoteCommand(restore)))
    steps += [
        Step("start", Phrase.of("step.start", node=node.name), RemoteCommand(cmd.start())),
        Step(
            "verify",
            Phrase.of("step.verify"),
            Wait(
                Probe.STREAMING,
                verify_timeout_s,
                POLL_INTERVAL_S,
                (cmd.slot, cmd.application_name, sync_state),
            ),
        ),
        Step(
            "release_wal",
            Phrase.of("step.release_wal", slot=cmd.rollback_slot),
            SlotChange(SlotOp.DROP, cmd.rollback_slot),
        ),
    ]
    return RebuildPlan(
        cluster=cluster.name,
        node=node.name,
        host=host,
        data_dir=str(cmd.data_dir),
        old_dir=str(cmd.old_dir),
        failed_dir=str(cmd.failed_dir),
        slot=cmd.slot,
        rollback_slot=cmd.rollback_slot,
        steps=tuple(steps),
        previous_job=previous_job,
        application_name=cmd.application_name,
        sync_state=sync_state,
    )


def rollback_steps(actions: Sequence[RollbackAction], cmd: Commands) -> tuple[Step, ...]:
    """The typed steps of a rollback decision (:func:`decide_rollback`), as they run."""
    steps: list[Step] = []
    for action in actions:
        if action is RollbackAction.STOP_NEW:
            steps += [
                Step(
                    "stop_new",
                    Phrase.of("step.stop_new"),
                    RemoteCommand(cmd.stop_unless_stopped()),
                ),
                Step(
                    "check_new_stopped",
                    Phrase.of("step.check_new_stopped"),
                    RemoteCommand(cmd.server_status(), ok_exits=(SERVER_STOPPED_EXIT,)),
                ),
            ]
        elif action is RollbackAction.SET_ASIDE_NEW:
            steps.append(
                Step(
                    "set_aside_new",
                    Phrase.of("step.set_aside_new", path=str(cmd.failed_dir)),
                    RemoteCommand(cmd.set_aside_new()),
                )
            )
        elif action is RollbackAction.PUT_BACK_OLD:
            steps.append(
                Step(
                    "put_back_old",
                    Phrase.of("step.put_back_old"),
                    RemoteCommand(cmd.put_back_old()),
                )
            )
        elif action is RollbackAction.RESTORE_SLOT:
            steps += [
                Step(
                    "slot_released",
                    Phrase.of("step.slot_released", slot=cmd.slot),
                    Wait(Probe.SLOT_INACTIVE, SLOT_RELEASE_TIMEOUT_S, POLL_INTERVAL_S, (cmd.slot,)),
                ),
                Step(
                    "restore_slot",
                    Phrase.of("step.restore_slot", slot=cmd.slot, source=cmd.rollback_slot),
                    SlotChange(SlotOp.COPY, cmd.slot, source=cmd.rollback_slot),
                ),
                Step(
                    "release_wal",
                    Phrase.of("step.release_wal", slot=cmd.rollback_slot),
                    SlotChange(SlotOp.DROP, cmd.rollback_slot),
                ),
            ]
        elif action is RollbackAction.START_OLD:
            steps.append(
                Step(
                    "start_old",
                    Phrase.of("step.start_old", node=cmd.node.name),
                    RemoteCommand(cmd.start_unless_running()),
                )
            )
    return tuple(steps)


def plan_digest(plan: RebuildPlan) -> str:
    """A short hash of everything a plan will do: an approval is bound to it, and a plan
    computed again at the press that hashes differently is not run."""
    parts = [
        plan.cluster,
        plan.node,
        plan.host,
        plan.data_dir,
        plan.old_dir,
        plan.failed_dir,
        plan.slot,
        plan.rollback_slot,
        plan.application_name,
        plan.sync_state,
        *(f"{step.key}|{action_kind(step.action)}|{describe(step.action)}" for step in plan.steps),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _guarded_move(source: PurePosixPath, target: PurePosixPath) -> str:
    """``mv`` that never lands in (or over) an existing ``target``: exit 3 if it exists."""
    return (
        f"if [ -e {q(target)} ]; then echo {q(f'{target} already exists')} >&2; "
        f"exit {DIRECTORY_EXISTS_EXIT}; fi; mv -- {q(source)} {q(target)}"
    )


def _ere_escape(text: str) -> str:
    return re.sub(r"([.\[\]()*+?{}|^$\\])", r"\\\1", text)

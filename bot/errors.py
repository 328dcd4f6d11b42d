"""The one exception tree of replbot.

Every error carries ``user_message``: a short, secret-free sentence that a handler may show in chat
as it is. Adapters translate library errors into these with ``raise ... from exc``.

    ReplbotError
    ├── ConfigError                 bad or missing configuration key (names the key)
    ├── InvalidInput                bad command arguments (before anything runs)
    │   ├── UnknownCluster
    │   └── UnknownNode
    ├── PermissionDenied            role too low, unknown user, chat not allowed
    ├── ConfirmationError           stale, foreign, replayed or unknown confirmation button
    ├── NodeUnavailable             cannot connect to / query a PostgreSQL node
    │   └── ServerRefused           the node answered but refused a statement (by SQLSTATE)
    ├── SlotError
    │   ├── SlotAlreadyExists
    │   ├── SlotNotFound
    │   ├── SlotActive
    │   └── SlotChangeRefused      /attachslot, /detachslot refused or failed (state said why)
    ├── AuditError                  audit log unusable or chain broken
    ├── RemoteError                 SSH / remote command could not run (connection, timeout)
    ├── RebuildError
    │   ├── RebuildRefused          preflight failed, node locked, not a replica …
    │   └── RebuildStepFailed       a step failed during execution (carries the step and output)
    └── DeliveryError               an alert message could not be sent
        ├── RetryLater              flood control (429): retry after N seconds
        ├── DeliveryUnavailable     5xx, network error, timeout: retry with back-off
        ├── DeliveryRejected        this message refused for good (bad request)
        │   └── ChatRefused         the chat refuses the bot (403 kicked, chat not found, 404)
        ├── ChatMoved               the group became a supergroup: send to ``new_chat_id`` instead
        └── TokenRejected           401: the bot's token is revoked, no chat can be reached
"""

from __future__ import annotations


class ReplbotError(Exception):
    """Base of all replbot errors; ``user_message`` is safe to show in a chat."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class ConfigError(ReplbotError):
    """The configuration is invalid; ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class InvalidInput(ReplbotError):
    """A command argument is invalid; nothing was run."""


class UnknownCluster(InvalidInput):
    """The named cluster is not configured."""


class UnknownNode(InvalidInput):
    """The named node is not configured."""


class PermissionDenied(ReplbotError):
    """The user may not run this command (or is not known at all)."""


class ConfirmationError(ReplbotError):
    """A confirmation button is stale, foreign, already used or unknown."""


class NodeUnavailable(ReplbotError):
    """A PostgreSQL node could not be reached or queried."""

    def __init__(self, node: str, reason: str) -> None:
        super().__init__(f"{node} unavailable: {reason}")
        self.node = node
        self.reason = reason


class ServerRefused(NodeUnavailable):
    """The node answered but refused a statement (a SQLSTATE other than a lost connection).

    Readers treat it like an unavailable node; the slot commands map its ``sqlstate``.
    """

    def __init__(self, node: str, sqlstate: str, reason: str) -> None:
        super().__init__(node, f"refused: {reason} (SQLSTATE {sqlstate})")
        self.sqlstate = sqlstate
        self.detail = reason


class SlotError(ReplbotError):
    """A replication slot operation was refused by the server."""


class SlotAlreadyExists(SlotError):
    """The slot to create exists already."""


class SlotNotFound(SlotError):
    """The slot to drop does not exist."""


class SlotActive(SlotError):
    """The slot is in use by a walsender and cannot be dropped."""


class SlotChangeRefused(SlotError):
    """/attachslot or /detachslot may not run (or stopped) for a stated reason."""


class AuditError(ReplbotError):
    """The audit log cannot be written or its hash chain is broken."""


class RemoteError(ReplbotError):
    """A remote command could not be run: connection refused, host key mismatch, timeout."""


class RebuildError(ReplbotError):
    """Base of rebuild problems."""


class RebuildRefused(RebuildError):
    """The rebuild may not start (or continue) for a stated reason; nothing was changed."""


class RebuildStepFailed(RebuildError):
    """A rebuild step failed; ``output`` is the tail of its stderr / the server log."""

    def __init__(self, step: str, message: str, output: str = "") -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.output = output


class DeliveryError(ReplbotError):
    """A message could not be delivered (raised by Notifier implementations)."""


class RetryLater(DeliveryError):
    """Flood control (Telegram 429): retry after ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limited: retry after {retry_after_s:g} s")
        self.retry_after_s = retry_after_s


class DeliveryUnavailable(DeliveryError):
    """A temporary failure (5xx, network error, timeout): retry with back-off."""


class DeliveryRejected(DeliveryError):
    """The message was refused for good (bad request, bot blocked): retrying cannot help."""


class ChatRefused(DeliveryRejected):
    """The chat refuses the bot altogether (kicked, blocked, chat gone): every message fails."""

    def __init__(self, chat_id: int, reason: str) -> None:
        super().__init__(f"chat {chat_id} refuses the bot: {reason}")
        self.chat_id = chat_id
        self.reason = reason


class ChatMoved(DeliveryError):
    """The group was upgraded to a supergroup: the same chat now has ``new_chat_id``."""

    def __init__(self, chat_id: int, new_chat_id: int) -> None:
        super().__init__(f"chat {chat_id} became supergroup {new_chat_id}")
        self.chat_id = chat_id
        self.new_chat_id = new_chat_id


class TokenRejected(DeliveryError):
    """Telegram refuses the bot's token (401): no chat can be reached until it is replaced."""

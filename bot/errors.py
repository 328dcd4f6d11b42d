"""The one exception tree of replbot.

Every error carries ``phrase``: a :class:`~bot.phrases.Phrase` (a key and its values, no words)
that the rendering layer words in the reply's language (``handlers.render.errors``), secret-free.
``user_message`` is its language-neutral form (``str(phrase)``) for logs. Messages of PostgreSQL,
libpq or SSH themselves are values, shown verbatim. Adapters translate library errors into these
with ``raise ... from exc``. Only :class:`ConfigError` (operator-facing, CLI) keeps English text.

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

from bot.phrases import Phrase, Value


class ReplbotError(Exception):
    """Base of all replbot errors; ``phrase`` is safe to show in a chat (once worded)."""

    def __init__(self, phrase: Phrase) -> None:
        super().__init__(str(phrase))
        self.phrase = phrase
        self.user_message = str(phrase)


class ConfigError(ReplbotError):
    """The configuration is invalid; ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(Phrase.of("error.config", setting=key, problem=problem))
        self.user_message = f"{key}: {problem}"
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
    """A PostgreSQL node could not be reached or queried.

    ``reason`` is what libpq or the server said (a str, shown verbatim) or a :class:`Phrase`
    of ours (a timeout); ``reason_phrase`` keeps it as given, ``reason`` as text for logs.
    """

    def __init__(self, node: str, reason: Value) -> None:
        super().__init__(Phrase.of("error.node_unavailable", node=node, reason=reason))
        self.node = node
        self.reason = str(reason)
        self.reason_phrase = reason


class ServerRefused(NodeUnavailable):
    """The node answered but refused a statement (a SQLSTATE other than a lost connection).

    Readers treat it like an unavailable node; the slot commands map its ``sqlstate``.
    """

    def __init__(self, node: str, sqlstate: str, reason: str) -> None:
        super().__init__(node, Phrase.of("error.server_refused", reason=reason, sqlstate=sqlstate))
        self.sqlstate = sqlstate
        self.detail = reason
        self.reason = f"{reason} (SQLSTATE {sqlstate})"


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

    def __init__(self, step: str, message: Value, output: str = "") -> None:
        super().__init__(Phrase.of("error.step_failed", step=step, reason=message))
        self.user_message = f"{step}: {message}"  # as job details held it (``step: reason``)
        self.reason_phrase = message
        self.step = step
        self.output = output


class DeliveryError(ReplbotError):
    """A message could not be delivered (raised by Notifier implementations)."""


class RetryLater(DeliveryError):
    """Flood control (Telegram 429): retry after ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(Phrase.of("error.delivery.rate_limited", retry_s=retry_after_s))
        self.retry_after_s = retry_after_s


class DeliveryUnavailable(DeliveryError):
    """A temporary failure (5xx, network error, timeout): retry with back-off."""


class DeliveryRejected(DeliveryError):
    """The message was refused for good (bad request, bot blocked): retrying cannot help."""


class ChatRefused(DeliveryRejected):
    """The chat refuses the bot altogether (kicked, blocked, chat gone): every message fails."""

    def __init__(self, chat_id: int, reason: str) -> None:
        super().__init__(Phrase.of("error.delivery.chat_refused", chat=chat_id, reason=reason))
        self.chat_id = chat_id
        self.reason = reason


class ChatMoved(DeliveryError):
    """The group was upgraded to a supergroup: the same chat now has ``new_chat_id``."""

    def __init__(self, chat_id: int, new_chat_id: int) -> None:
        super().__init__(Phrase.of("error.delivery.chat_moved", chat=chat_id, new_chat=new_chat_id))
        self.chat_id = chat_id
        self.new_chat_id = new_chat_id


class TokenRejected(DeliveryError):
    """Telegram refuses the bot's token (401): no chat can be reached until it is replaced."""

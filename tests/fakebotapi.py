"""A local fake of the Telegram Bot API HTTP server, for tests that drive the real PTB client.

Point python-telegram-bot at it with::

    fake = FakeBotApi()
    fake.start()
    app = ApplicationBuilder().token(fake.token).base_url(fake.base_url).build()

PTB appends the token to ``base_url`` and POSTs to ``/bot<TOKEN>/<method>``. Its default
``HTTPXRequest`` sends ``application/x-www-form-urlencoded`` bodies in which *every* value is a
string: ``str`` values as they are, everything else (ints, bools, lists, dicts) JSON-encoded —
``chat_id=42``, ``timeout=10``, ``disable_notification=true``,
``reply_markup={"inline_keyboard": ...}``. Requests carrying files are ``multipart/form-data``.
This server also accepts ``application/json`` bodies and query strings.

Standard library only. The server runs in a background thread (``ThreadingHTTPServer``) and binds
127.0.0.1 on a free port. State is guarded by one lock; ``getUpdates`` long polls wait on a
condition that ``push_*`` and ``stop`` notify.

Deliberate deviations from the real Bot API (all in the direction of catching bugs):

* with ``parse_mode="HTML"`` a bare ``&`` that does not start ``&lt; &gt; &amp; &quot;`` or a
  numeric reference is rejected (real Telegram keeps it literally);
* Markdown / MarkdownV2 text is not validated, it is stored as given.

A chat can be made to refuse every call that names it (:meth:`FakeBotApi.refuse_chat`, e.g.
with :data:`BOT_KICKED`, :data:`CHAT_NOT_FOUND`, 404 or 401 ``Unauthorized``), or to answer as
a group upgraded to a supergroup (:meth:`FakeBotApi.migrate_chat`: 400 with
``parameters.migrate_to_chat_id``), as the real Bot API does.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "BOT_KICKED",
    "CHAT_NOT_FOUND",
    "CHAT_UPGRADED",
    "MAX_MESSAGE_LENGTH",
    "NOT_MODIFIED",
    "FakeBotApi",
    "HtmlParseError",
    "RecordedCall",
    "parse_telegram_html",
]

DEFAULT_TOKEN = "123456:TEST-fake-token-abcdef"
BOT_USERNAME = "replbot_test_bot"
MAX_MESSAGE_LENGTH = 4096
CHAT_UPGRADED = "Bad Request: group chat was upgraded to a supergroup chat"
BOT_KICKED = "Forbidden: bot was kicked from the group chat"
CHAT_NOT_FOUND = "Bad Request: chat not found"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)

Json = dict[str, Any]


@dataclass
class RecordedCall:
    """One request the fake answered (recorded when the answer was ready)."""

    method: str  # canonical Bot API name, e.g. "sendMessage" (as requested if unknown)
    params: dict[str, Any]  # decoded parameters (JSON-encoded fields parsed back)
    at: float  # time.monotonic() when the request arrived
    response: dict[str, Any]  # the JSON body returned
    status: int = 200  # the HTTP status returned

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def result(self) -> Any:
        return self.response.get("result")


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: int | None
    description: str
    delay: float


class _ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: Json | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> Json:
        out: Json = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            out["parameters"] = self.parameters
        return out


def _bad_request(detail: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {detail}")


# --------------------------------------------------------------------------------------------
# Telegram HTML
# --------------------------------------------------------------------------------------------


class HtmlParseError(ValueError):
    """Raised for text Telegram would refuse with "can't parse entities"."""


_ENTITY_RE = re.compile(r"&(?:(lt|gt|amp|quot);|#([0-9]{1,7});|#[xX]([0-9a-fA-F]{1,6});)")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_ATTR_NAME_RE = re.compile(r"[A-Za-z0-9_:-]+")


def _u16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _byte_offset(text: str, i: int) -> int:
    return len(text[:i].encode("utf-8"))


def _decode_entity(text: str, i: int) -> tuple[str, int] | None:
    m = _ENTITY_RE.match(text, i)
    if not m:
        return None
    if m.group(1):
        return _NAMED[m.group(1)], m.end()
    code = int(m.group(2), 10) if m.group(2) else int(m.group(3), 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code), m.end()


def _decode_attr(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "&" and (dec := _decode_entity(value, i)):
            out.append(dec[0])
            i = dec[1]
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


@dataclass
class _Open:
    name: str
    start: int  # UTF-16 offset in the output
    attrs: dict[str, str]
    byte_pos: int
    language: str | None = None
    children: list[Json] = field(default_factory=list)


def parse_telegram_html(text: str) -> tuple[str, list[Json]]:
    """Parse Telegram-flavoured HTML into (plain text, MessageEntity dicts).

    Offsets/lengths are in UTF-16 code units like the Bot API. Raises HtmlParseError with a
    td-like message for anything Telegram would reject (plus bare ``&``, see module doc).
    """
    out: list[str] = []
    pos = 0  # UTF-16 length of out
    stack: list[_Open] = []
    entities: list[Json] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "&":
            dec = _decode_entity(text, i)
            if dec is None:
                raise HtmlParseError(
                    f'Unescaped "&" at byte offset {_byte_offset(text, i)}; use "&amp;"'
                )
            out.append(dec[0])
            pos += _u16(dec[0])
            i = dec[1]
            continue
        if c != "<":
            out.append(c)
            pos += _u16(c)
            i += 1
            continue
        begin = i
        if i + 1 < n and text[i + 1] == "/":
            end = text.find(">", i)
            if end == -1:
                raise HtmlParseError(f"Unclosed end tag at byte offset {_byte_offset(text, i)}")
            name = text[i + 2 : end].strip().lower()
            if not stack:
                raise HtmlParseError(
                    f'Unexpected end tag "</{name}>" at byte offset {_byte_offset(text, begin)}'
                )
            top = stack.pop()
            if name != top.name:
                raise HtmlParseError(
                    f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                    f'expected "</{top.name}>", found "</{name}>"'
                )
            _close_tag(top, pos, stack, entities)
            i = end + 1
            continue
        # start tag
        j = i + 1
        while j < n and not text[j].isspace() and text[j] not in "<>/":
            j += 1
        name = text[i + 1 : j].lower()
        if j >= n:
            raise HtmlParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
        if name not in _TAG_TYPES:
            raise HtmlParseError(
                f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, begin)}'
            )
        attrs: dict[str, str] = {}
        while True:
            while j < n and text[j].isspace():
                j += 1
            if j >= n:
                raise HtmlParseError(
                    f"Unclosed start tag at byte offset {_byte_offset(text, begin)}"
                )
            if text[j] == ">":
                j += 1
                break
            m = _ATTR_NAME_RE.match(text, j)
            if not m:
                raise HtmlParseError(
                    f'Expected equal sign in declaration of an attribute of the tag "{name}" '
                    f"at byte offset {_byte_offset(text, begin)}"
                )
            attr = m.group(0).lower()
            j = m.end()
            while j < n and text[j].isspace():
                j += 1
            if j < n and text[j] == "=":
                j += 1
                while j < n and text[j].isspace():
                    j += 1
                if j >= n:
                    raise HtmlParseError(
                        f"Unclosed start tag at byte offset {_byte_offset(text, begin)}"
                    )
                if text[j] in "\"'":
                    q = text[j]
                    close = text.find(q, j + 1)
                    if close == -1:
                        raise HtmlParseError(
                            f'Unclosed end tag (missing {q}) of the tag "{name}" '
                            f"at byte offset {_byte_offset(text, begin)}"
                        )
                    value = text[j + 1 : close]
                    j = close + 1
                else:
                    k = j
                    while k < n and not text[k].isspace() and text[k] != ">":
                        k += 1
                    value = text[j:k]
                    j = k
                attrs[attr] = _decode_attr(value)
            else:
                attrs[attr] = ""
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise HtmlParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset '
                f"{_byte_offset(text, begin)}"
            )
        if name == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
            raise HtmlParseError(
                f'Tag "tg-emoji" must have attribute "emoji-id" with the custom emoji '
                f"identifier at byte offset {_byte_offset(text, begin)}"
            )
        stack.append(_Open(name, pos, attrs, _byte_offset(text, begin)))
        i = j
    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _close_tag(top: _Open, pos: int, stack: list[_Open], entities: list[Json]) -> None:
    length = pos - top.start
    kind = _TAG_TYPES[top.name]
    parent = stack[-1] if stack else None
    if (
        kind == "code"
        and parent is not None
        and parent.name == "pre"
        and top.attrs.get("class", "").startswith("language-")
    ):
        parent.language = top.attrs["class"][len("language-") :]
        return
    if length <= 0:
        return
    ent: Json = {"type": kind, "offset": top.start, "length": length}
    if kind == "text_link":
        href = top.attrs.get("href")
        if not href:
            return
        m = re.fullmatch(r"tg://user\?id=(\d+)", href)
        if m:
            ent = {
                "type": "text_mention",
                "offset": top.start,
                "length": length,
                "user": {"id": int(m.group(1)), "is_bot": False, "first_name": ""},
            }
        else:
            ent["url"] = href
    elif kind == "pre" and top.language:
        ent["language"] = top.language
    elif kind == "blockquote" and "expandable" in top.attrs:
        ent["type"] = "expandable_blockquote"
    elif kind == "custom_emoji":
        ent["custom_emoji_id"] = top.attrs["emoji-id"]
    entities.append(ent)


def _strip_text(text: str, entities: list[Json]) -> tuple[str, list[Json]]:
    """Telegram trims leading/trailing whitespace of message text; shift/clip entities."""
    lead = text[: len(text) - len(text.lstrip())]
    stripped = text.strip()
    shift, total = _u16(lead), _u16(stripped)
    out: list[Json] = []
    for e in entities:
        start = max(e["offset"] - shift, 0)
        end = min(e["offset"] + e["length"] - shift, total)
        if end > start:
            out.append({**e, "offset": start, "length": end - start})
    return stripped, out


# --------------------------------------------------------------------------------------------
# Request decoding
# --------------------------------------------------------------------------------------------

# Parameters that are strings in the Bot API: never JSON-decoded even if they look like JSON.
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "data",
        "callback_query_id",
        "inline_message_id",
        "language_code",
        "url",
        "secret_token",
        "ip_address",
        "description",
        "short_description",
        "name",
        "title",
        "action",
        "emoji",
        "query",
        "business_connection_id",
        "message_effect_id",
        "filename",
        "custom_emoji_id",
    }
)


def _decode_value(key: str, value: Any) -> Any:
    if not isinstance(value, str) or key in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _decode_params(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _decode_value(k, v) for k, v in raw.items()}


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    out: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            out[name] = {"filename": filename, "size": len(data), "content": data}
        else:
            out[name] = data.decode("utf-8", "replace")
    return out


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeBotApi


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without NODELAY, Nagle + delayed ACK
        # add ~40 ms to every answer, which no real Bot API server does.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.fake._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        raw: dict[str, Any] = dict(parse_qsl(split.query, keep_blank_values=True))
        ctype = self.headers.get("Content-Type") or ""
        try:
            if body:
                if ctype.startswith("application/json"):
                    loaded = json.loads(body.decode("utf-8"))
                    if isinstance(loaded, dict):
                        raw.update(loaded)
                elif ctype.startswith("multipart/form-data"):
                    raw.update(_parse_multipart(ctype, body))
                else:
                    raw.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except ValueError:
            self._reply(400, {"ok": False, "error_code": 400, "description": "Bad Request"})
            return
        fake = self.server.fake
        fake._inflight_delta(+1)
        try:
            status, response = fake._dispatch(split.path, _decode_params(raw), arrived)
            self._reply(status, response)
        finally:
            fake._inflight_delta(-1)

    def _reply(self, status: int, response: Json) -> None:
        data = json.dumps(response, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:  # client went away (timed out / cancelled long poll)
            self.close_connection = True


# --------------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------------


def _always(_: RecordedCall) -> bool:
    return True


class FakeBotApi:
    """In-process fake Telegram Bot API server (see module docstring)."""

    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1
        self.bot_user: Json = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "replbot test",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._calls: list[RecordedCall] = []
        self._updates: list[Json] = []  # pending (unconfirmed) updates, ascending update_id
        self._update_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._next_msg_id: dict[str, int] = {}
        self._messages: dict[tuple[str, int], Json] = {}
        # sendPhoto uploads: (chat_id, PNG bytes, caption), in order
        self.photos: list[tuple[str, bytes, str]] = []
        self._chats: dict[str, Json] = {}
        self._users: dict[int, Json] = {}
        self._callbacks: set[str] = set()
        self._commands: dict[tuple[str, str], list[Json]] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._chat_refusals: dict[str, _ApiError] = {}
        self._webhook_url = ""
        self._allowed_updates: list[str] = []
        self._poll_generation = 0
        self._waiting_polls = 0
        self._inflight = 0
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ---------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            daemon=True,
            name=f"FakeBotApi:{self.port}",
        )
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()  # wake long polls: they answer [] right away
        server.shutdown()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # let woken long polls / delayed faults answer
            with self._lock:
                if self._inflight == 0:
                    break
            time.sleep(0.005)
        with self._lock:
            conns = list(self._connections)
        for conn in conns:  # unblock keep-alive readers
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(timeout=2)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeBotApi:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _inflight_delta(self, delta: int) -> None:
        with self._lock:
            self._inflight += delta

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # ---------------------------------------------------------------- recorded calls

    @property
    def calls(self) -> list[RecordedCall]:
        """A snapshot (copy) of all recorded calls, in the order they were answered."""
        with self._lock:
            return list(self._calls)

    def calls_of(self, method: str) -> list[RecordedCall]:
        with self._lock:
            return [c for c in self._calls if c.method == method]

    def mark(self) -> int:
        """Current number of recorded calls: pass as ``after=`` to wait for *new* calls."""
        with self._lock:
            return len(self._calls)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def _find(
        self, method: str, predicate: Callable[[RecordedCall], bool], after: int
    ) -> RecordedCall | None:
        with self._lock:
            candidates = self._calls[after:]
        for call in candidates:
            if call.method == method and predicate(call):
                return call
        return None

    def _timeout_error(self, method: str, timeout: float, after: int) -> AssertionError:
        with self._lock:
            seen = self._calls[after:]
        lines = [
            f"  [{after + k}] {c.method} {c.status} {_short(c.params)}" for k, c in enumerate(seen)
        ]
        return AssertionError(
            f"no matching {method} call within {timeout}s (after index {after}); calls seen:\n"
            + ("\n".join(lines) or "  (none)")
        )

    def _found_or_late(
        self,
        method: str,
        predicate: Callable[[RecordedCall], bool],
        after: int,
        deadline: float,
        timeout: float,
    ) -> RecordedCall | None:
        """The matching call, None to keep waiting, or AssertionError past the deadline."""
        found = self._find(method, predicate, after)
        if found is None and time.monotonic() >= deadline:
            raise self._timeout_error(method, timeout, after)
        return found

    def wait_for(
        self,
        method: str,
        predicate: Callable[[RecordedCall], bool] = _always,
        timeout: float = 10,
        after: int = 0,
    ) -> RecordedCall:
        deadline = time.monotonic() + timeout
        while (found := self._found_or_late(method, predicate, after, deadline, timeout)) is None:
            time.sleep(0.01)
        return found

    async def await_for(
        self,
        method: str,
        predicate: Callable[[RecordedCall], bool] = _always,
        timeout: float = 10,
        after: int = 0,
    ) -> RecordedCall:
        deadline = time.monotonic() + timeout
        while (found := self._found_or_late(method, predicate, after, deadline, timeout)) is None:
            await asyncio.sleep(0.01)
        return found

    def sent_texts(self, chat_id: int | str | None = None, *, plain: bool = False) -> list[str]:
        """Texts of successful sendMessage/editMessageText calls, in order.

        As the bot sent them (with HTML tags/escapes), or with ``plain=True`` as Telegram stored
        them (tags removed, entities unescaped, trimmed).
        """
        out: list[str] = []
        for c in self.calls:
            if c.method not in ("sendMessage", "editMessageText") or not c.ok:
                continue
            if chat_id is not None and str(c.params.get("chat_id")) != str(chat_id):
                continue
            if plain:
                res = c.result
                out.append(res.get("text", "") if isinstance(res, dict) else "")
            else:
                out.append(str(c.params.get("text", "")))
        return out

    # ---------------------------------------------------------------- stored state

    def message(self, chat_id: int | str, message_id: int) -> Json | None:
        """The stored Message (as the Bot API would return it), or None."""
        with self._lock:
            msg = self._messages.get((str(chat_id), message_id))
            return json.loads(json.dumps(msg)) if msg is not None else None

    def my_commands(self, scope: Json | None = None, language_code: str = "") -> list[Json]:
        with self._lock:
            return list(self._commands.get((_scope_key(scope), language_code), []))

    @property
    def waiting_polls(self) -> int:
        """getUpdates long polls currently blocked in the server (calls are recorded on answer)."""
        with self._lock:
            return self._waiting_polls

    def wait_polling(self, timeout: float = 5) -> None:
        """Block until some client is blocked in a getUpdates long poll."""
        deadline = time.monotonic() + timeout
        while self.waiting_polls == 0:
            if time.monotonic() >= deadline:
                raise self._timeout_error("getUpdates (long poll)", timeout, 0)
            time.sleep(0.01)

    async def await_polling(self, timeout: float = 5) -> None:
        """Like wait_polling, without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while self.waiting_polls == 0:
            if time.monotonic() >= deadline:
                raise self._timeout_error("getUpdates (long poll)", timeout, 0)
            await asyncio.sleep(0.01)

    @property
    def pending_updates(self) -> int:
        with self._lock:
            return len(self._updates)

    # ---------------------------------------------------------------- fault injection

    def fail_next(
        self,
        method: str,
        *,
        status: int = 500,
        times: int = 1,
        retry_after: int | None = None,
        description: str = "Internal Server Error",
        delay: float = 0.0,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        429 -> "Too Many Requests: retry after N" with parameters.retry_after (N defaults to 1);
        other statuses answer ``description`` (the default is replaced by the status phrase for
        statuses other than 500). ``delay`` sleeps first (interruptible by stop()) to simulate
        timeouts; ``status=200`` with a delay answers normally after the delay.
        """
        if status == 429 and description == "Internal Server Error":
            description = f"Too Many Requests: retry after {retry_after or 1}"
            retry_after = retry_after or 1
        elif description == "Internal Server Error" and status != 500:
            try:
                description = HTTPStatus(status).phrase
            except ValueError:
                description = "Error"
        with self._lock:
            self._faults.setdefault(method.lower(), []).append(
                _Fault(status, times, retry_after, description, delay)
            )

    def refuse_chat(
        self, chat_id: int, status: int, description: str, parameters: Json | None = None
    ) -> None:
        """Answer every later call naming ``chat_id`` with this error, until accept_chat()."""
        with self._lock:
            self._chat_refusals[str(chat_id)] = _ApiError(status, description, parameters)

    def migrate_chat(self, chat_id: int, new_chat_id: int) -> None:
        """``chat_id`` became supergroup ``new_chat_id``: 400 with migrate_to_chat_id."""
        self.refuse_chat(chat_id, 400, CHAT_UPGRADED, {"migrate_to_chat_id": new_chat_id})

    def accept_chat(self, chat_id: int) -> None:
        """Undo refuse_chat() / migrate_chat()."""
        with self._lock:
            self._chat_refusals.pop(str(chat_id), None)

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(method.lower())
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.pop(0)
            return fault

    # ---------------------------------------------------------------- updates

    def push_update(self, update: Json) -> int:
        """Enqueue a raw update (``update_id`` is assigned); returns the update_id."""
        with self._cond:
            update_id = next(self._update_ids)
            self._updates.append({"update_id": update_id, **update})
            self._cond.notify_all()
            return update_id

    def push_message(
        self,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        chat_type: str = "private",
        username: str | None = None,
        first_name: str = "Test",
        date: int | None = None,
        forward_origin: Json | None = None,
    ) -> int:
        """A user sends ``text``; ``date`` (epoch seconds) defaults to now, and a
        ``forward_origin`` (a MessageOrigin dict) makes it a forwarded message."""
        user: Json = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        user["language_code"] = "en"
        cid = user_id if chat_id is None else chat_id
        if chat_type == "private":
            chat: Json = {"id": cid, "type": "private", "first_name": first_name}
            if username:
                chat["username"] = username
        else:
            chat = {"id": cid, "type": chat_type, "title": f"Test {chat_type}"}
        with self._lock:
            self._users[user_id] = user
            self._chats[str(cid)] = chat
            msg: Json = {
                "message_id": self._new_message_id(cid),
                "from": user,
                "chat": chat,
                "date": int(time.time()) if date is None else date,
                "text": text,
            }
            if forward_origin is not None:
                msg["forward_origin"] = forward_origin
            if text.startswith("/"):
                word = text.split(maxsplit=1)[0] if text.strip() else text
                msg["entities"] = [{"type": "bot_command", "offset": 0, "length": _u16(word)}]
            self._messages[(str(cid), msg["message_id"])] = msg
            return self.push_update({"message": json.loads(json.dumps(msg))})

    def push_callback(
        self, user_id: int, data: str, message_id: int, chat_id: int | None = None
    ) -> int:
        cid = user_id if chat_id is None else chat_id
        with self._lock:
            user = self._users.get(user_id) or {
                "id": user_id,
                "is_bot": False,
                "first_name": "Test",
                "language_code": "en",
            }
            msg = self._messages.get((str(cid), message_id)) or {
                "message_id": message_id,
                "from": self.bot_user_short,
                "chat": self._chat(cid),
                "date": int(time.time()),
            }
            query_id = str(next(self._callback_ids) + 10**15)
            self._callbacks.add(query_id)
            return self.push_update(
                {
                    "callback_query": {
                        "id": query_id,
                        "from": user,
                        "message": json.loads(json.dumps(msg)),
                        "chat_instance": str(abs(hash(str(cid))) % 10**18),
                        "data": data,
                    }
                }
            )

    # ---------------------------------------------------------------- dispatch

    @property
    def bot_user_short(self) -> Json:
        return {k: self.bot_user[k] for k in ("id", "is_bot", "first_name", "username")}

    def _dispatch(self, path: str, params: dict[str, Any], arrived: float) -> tuple[int, Json]:
        prefix = f"/bot{self.token}/"
        if not path.startswith(prefix):
            if path.startswith("/bot"):
                err = _ApiError(401, "Unauthorized")
            else:
                err = _ApiError(404, "Not Found")
            return err.status, err.body()
        requested = path[len(prefix) :]
        handler = _METHODS.get(requested.lower())
        method = handler[0] if handler else requested
        status, response = 200, {}
        fault = self._take_fault(method)
        if fault is not None and fault.delay > 0:
            self._stopping.wait(fault.delay)
        try:
            if fault is not None and fault.status != 200:
                params_out = (
                    {"retry_after": fault.retry_after} if fault.retry_after is not None else None
                )
                raise _ApiError(fault.status, fault.description, params_out)
            if handler is None:
                raise _ApiError(404, "Not Found")
            with self._lock:
                refusal = self._chat_refusals.get(str(params.get("chat_id")))
            if refusal is not None:
                raise _ApiError(refusal.status, refusal.description, refusal.parameters)
            response = {"ok": True, "result": handler[1](self, params)}
        except _ApiError as err:
            status, response = err.status, err.body()
        with self._lock:
            self._calls.append(RecordedCall(method, params, arrived, response, status))
        return status, response

    # ---------------------------------------------------------------- helpers

    def _new_message_id(self, chat_id: int | str) -> int:
        key = str(chat_id)
        self._next_msg_id[key] = self._next_msg_id.get(key, 0) + 1
        return self._next_msg_id[key]

    def _chat(self, chat_id: Any) -> Json:
        key = str(chat_id)
        known = self._chats.get(key)
        if known is not None:
            return known
        if isinstance(chat_id, str) and not key.lstrip("-").isdigit():
            chat: Json = {
                "id": -1001000000000 - len(self._chats),
                "type": "channel",
                "title": key,
                "username": key.lstrip("@"),
            }
        else:
            cid = int(chat_id)
            if cid > 0:
                chat = {"id": cid, "type": "private", "first_name": "Test"}
            elif key.startswith("-100"):
                chat = {"id": cid, "type": "supergroup", "title": "Test supergroup"}
            else:
                chat = {"id": cid, "type": "group", "title": "Test group"}
        self._chats[key] = chat
        return chat

    @staticmethod
    def _require(params: dict[str, Any], name: str) -> Any:
        value = params.get(name)
        if value is None or value == "":
            raise _bad_request(f"{name} is empty" if name != "chat_id" else "chat not found")
        return value

    @staticmethod
    def _render_text(params: dict[str, Any]) -> tuple[str, list[Json]]:
        text = params.get("text")
        if not isinstance(text, str) or not text:
            raise _bad_request("message text is empty")
        mode = str(params.get("parse_mode") or "").lower()
        if mode == "html":
            try:
                plain, entities = parse_telegram_html(text)
            except HtmlParseError as exc:
                raise _bad_request(f"can't parse entities: {exc}") from None
        else:
            plain = text
            given = params.get("entities")
            entities = [dict(e) for e in given] if isinstance(given, list) else []
        plain, entities = _strip_text(plain, entities)
        if not plain:
            raise _bad_request("message text is empty")
        if len(plain) > MAX_MESSAGE_LENGTH:
            raise _bad_request("message is too long")
        return plain, entities

    @staticmethod
    def _inline_markup(params: dict[str, Any]) -> Json | None:
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and markup.get("inline_keyboard"):
            return markup
        return None

    def _stored(self, params: dict[str, Any]) -> Json:
        chat_id = self._require(params, "chat_id")
        message_id = params.get("message_id")
        msg = (
            self._messages.get((str(chat_id), message_id)) if isinstance(message_id, int) else None
        )
        if msg is None:
            raise _bad_request("message to edit not found")
        return msg

    # ---------------------------------------------------------------- methods

    def _get_me(self, params: dict[str, Any]) -> Any:
        return dict(self.bot_user)

    def _log_out(self, params: dict[str, Any]) -> Any:
        return True

    def _set_my_commands(self, params: dict[str, Any]) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("commands must be an array of at most 100 BotCommand")
        for cmd in commands:
            if not (
                isinstance(cmd, dict)
                and isinstance(cmd.get("command"), str)
                and re.fullmatch(r"[a-z0-9_]{1,32}", cmd["command"])
                and isinstance(cmd.get("description"), str)
                and 1 <= len(cmd["description"].strip()) <= 256
            ):
                raise _bad_request("BOT_COMMAND_INVALID")
        key = (_scope_key(params.get("scope")), str(params.get("language_code") or ""))
        with self._lock:
            self._commands[key] = [
                {"command": c["command"], "description": c["description"]} for c in commands
            ]
        return True

    def _delete_my_commands(self, params: dict[str, Any]) -> Any:
        key = (_scope_key(params.get("scope")), str(params.get("language_code") or ""))
        with self._lock:
            self._commands.pop(key, None)
        return True

    def _get_my_commands(self, params: dict[str, Any]) -> Any:
        return self.my_commands(params.get("scope"), str(params.get("language_code") or ""))

    def _set_webhook(self, params: dict[str, Any]) -> Any:
        with self._cond:
            self._webhook_url = str(self._require(params, "url"))
            if params.get("drop_pending_updates") is True:
                self._updates.clear()
            self._cond.notify_all()
        return True

    def _delete_webhook(self, params: dict[str, Any]) -> Any:
        with self._lock:
            self._webhook_url = ""
            if params.get("drop_pending_updates") is True:
                self._updates.clear()
        return True

    def _get_webhook_info(self, params: dict[str, Any]) -> Any:
        with self._lock:
            return {
                "url": self._webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }

    def _get_updates(self, params: dict[str, Any]) -> Any:
        offset = params.get("offset")
        limit = params.get("limit")
        limit = min(max(int(limit), 1), 100) if isinstance(limit, int | float) else 100
        timeout_raw = params.get("timeout") or 0
        timeout = float(timeout_raw) if isinstance(timeout_raw, int | float) else 0.0
        allowed = params.get("allowed_updates")
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            if self._webhook_url:
                raise _ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            if isinstance(allowed, list):
                self._allowed_updates = [str(a) for a in allowed]
            self._poll_generation += 1
            generation = self._poll_generation
            self._cond.notify_all()  # terminate an older pending long poll (409, like Telegram)
            if isinstance(offset, int) and offset > 0:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while True:
                if isinstance(offset, int) and offset < 0:
                    batch = self._updates[offset:]
                else:
                    batch = self._updates
                batch = [u for u in batch if self._allowed(u)][:limit]
                if batch or self._stopping.is_set():
                    return json.loads(json.dumps(batch))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._waiting_polls += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._waiting_polls -= 1
                if self._poll_generation != generation:
                    raise _ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that only "
                        "one bot instance is running",
                    )

    def _allowed(self, update: Json) -> bool:
        if not self._allowed_updates:
            return True
        return any(k in self._allowed_updates for k in update if k != "update_id")

    def _send_message(self, params: dict[str, Any]) -> Any:
        chat_id = self._require(params, "chat_id")
        plain, entities = self._render_text(params)
        with self._lock:
            msg: Json = {
                "message_id": self._new_message_id(chat_id),
                "from": self.bot_user_short,
                "chat": self._chat(chat_id),
                "date": int(time.time()),
                "text": plain,
            }
            if entities:
                msg["entities"] = entities
            thread = params.get("message_thread_id")
            if thread is not None:
                msg["message_thread_id"] = thread
                msg["is_topic_message"] = True
            markup = self._inline_markup(params)
            if markup is not None:
                msg["reply_markup"] = markup
            self._messages[(str(chat_id), msg["message_id"])] = msg
            return json.loads(json.dumps(msg))

    def _send_document(self, params: dict[str, Any]) -> Any:
        chat_id = self._require(params, "chat_id")
        doc = self._require(params, "document")
        name, size = "file", 0
        if isinstance(doc, dict):
            name, size = str(doc.get("filename") or "file"), int(doc.get("size") or 0)
        with self._lock:
            msg: Json = {
                "message_id": self._new_message_id(chat_id),
                "from": self.bot_user_short,
                "chat": self._chat(chat_id),
                "date": int(time.time()),
                "document": {
                    "file_id": f"DOC{len(self._messages)}",
                    "file_unique_id": f"U{len(self._messages)}",
                    "file_name": name,
                    "file_size": size,
                },
            }
            if isinstance(params.get("caption"), str):
                msg["caption"] = params["caption"]
            self._messages[(str(chat_id), msg["message_id"])] = msg
            return json.loads(json.dumps(msg))

    def _send_photo(self, params: dict[str, Any]) -> Any:
        """sendPhoto with a multipart upload: the file's bytes are kept (``photos``)."""
        chat_id = self._require(params, "chat_id")
        photo = self._require(params, "photo")
        if not isinstance(photo, dict) or not photo.get("content"):
            raise _ApiError(400, "Bad Request: there is no photo in the request")
        caption = params.get("caption")
        if isinstance(caption, str) and len(caption) > 1024:
            raise _ApiError(400, "Bad Request: message caption is too long")
        with self._lock:
            msg: Json = {
                "message_id": self._new_message_id(chat_id),
                "from": self.bot_user_short,
                "chat": self._chat(chat_id),
                "date": int(time.time()),
                "photo": [
                    {
                        "file_id": f"PH{len(self._messages)}",
                        "file_unique_id": f"U{len(self._messages)}",
                        "width": 0,
                        "height": 0,
                        "file_size": int(photo.get("size") or 0),
                    }
                ],
            }
            if isinstance(caption, str):
                msg["caption"] = caption
            self._messages[(str(chat_id), msg["message_id"])] = msg
            self.photos.append((str(chat_id), bytes(photo["content"]), caption or ""))
            return json.loads(json.dumps(msg))

    def _edit_message_text(self, params: dict[str, Any]) -> Any:
        plain, entities = self._render_text(params)
        if params.get("inline_message_id"):
            return True
        markup = self._inline_markup(params)
        with self._lock:
            msg = self._stored(params)
            if (
                msg.get("text") == plain
                and msg.get("entities", []) == entities
                and msg.get("reply_markup") == markup
            ):
                raise _ApiError(400, NOT_MODIFIED)
            msg["text"] = plain
            if entities:
                msg["entities"] = entities
            else:
                msg.pop("entities", None)
            if markup is not None:
                msg["reply_markup"] = markup
            else:
                msg.pop("reply_markup", None)
            msg["edit_date"] = int(time.time())
            return json.loads(json.dumps(msg))

    def _edit_message_reply_markup(self, params: dict[str, Any]) -> Any:
        if params.get("inline_message_id"):
            return True
        markup = self._inline_markup(params)
        with self._lock:
            msg = self._stored(params)
            if msg.get("reply_markup") == markup:
                raise _ApiError(400, NOT_MODIFIED)
            if markup is not None:
                msg["reply_markup"] = markup
            else:
                msg.pop("reply_markup", None)
            msg["edit_date"] = int(time.time())
            return json.loads(json.dumps(msg))

    def _delete_message(self, params: dict[str, Any]) -> Any:
        chat_id = self._require(params, "chat_id")
        message_id = params.get("message_id")
        with self._lock:
            key = (str(chat_id), message_id if isinstance(message_id, int) else -1)
            if self._messages.pop(key, None) is None:
                raise _bad_request("message to delete not found")
        return True

    def _answer_callback_query(self, params: dict[str, Any]) -> Any:
        query_id = str(params.get("callback_query_id") or "")
        with self._lock:
            if query_id not in self._callbacks:
                raise _bad_request(
                    "query is too old and response timeout expired or query ID is invalid"
                )
        return True

    def _send_chat_action(self, params: dict[str, Any]) -> Any:
        self._require(params, "chat_id")
        self._require(params, "action")
        return True


def _scope_key(scope: Any) -> str:
    if not scope or scope == {"type": "default"}:
        return "default"
    return json.dumps(scope, sort_keys=True)


def _short(params: dict[str, Any]) -> str:
    text = json.dumps(params, ensure_ascii=False, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


_Handler_t = Callable[[FakeBotApi, dict[str, Any]], Any]
_METHODS: dict[str, tuple[str, _Handler_t]] = {
    name.lower(): (name, fn)
    for name, fn in [
        ("getMe", FakeBotApi._get_me),
        ("logOut", FakeBotApi._log_out),
        ("close", FakeBotApi._log_out),
        ("setMyCommands", FakeBotApi._set_my_commands),
        ("deleteMyCommands", FakeBotApi._delete_my_commands),
        ("getMyCommands", FakeBotApi._get_my_commands),
        ("setWebhook", FakeBotApi._set_webhook),
        ("deleteWebhook", FakeBotApi._delete_webhook),
        ("getWebhookInfo", FakeBotApi._get_webhook_info),
        ("getUpdates", FakeBotApi._get_updates),
        ("sendMessage", FakeBotApi._send_message),
        ("sendDocument", FakeBotApi._send_document),
        ("sendPhoto", FakeBotApi._send_photo),
        ("editMessageText", FakeBotApi._edit_message_text),
        ("editMessageReplyMarkup", FakeBotApi._edit_message_reply_markup),
        ("deleteMessage", FakeBotApi._delete_message),
        ("answerCallbackQuery", FakeBotApi._answer_callback_query),
        ("sendChatAction", FakeBotApi._send_chat_action),
    ]
}

"""The console transport: the same dispatcher and replies as Telegram, in a terminal.

Lines starting with ``/`` are commands; a number (or ``/press N``) presses the N-th button
shown so far, and ``/press LABEL`` the newest button whose label starts with LABEL (so a
scripted ``--exec`` does not depend on how many alert buttons arrived before). Replies are
rendered to plain text.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path

from bot.models import OutgoingMessage
from handlers import render
from handlers.base import Button, Reply, Request
from handlers.dispatch import Dispatcher

Printer = Callable[[str], None]


class ConsoleChat:
    """The Chat port printing to a terminal; remembers buttons so they can be pressed."""

    def __init__(self, out: Printer, photo_dir: Path | None = None) -> None:
        """``photo_dir``: where pictures (charts) are written; default: the temp directory."""
        self._out = out
        self._photo_dir = photo_dir
        self.photos: list[Path] = []
        self._next_id = 1
        self.buttons: dict[int, tuple[int, str]] = {}
        self.labels: dict[int, str] = {}
        self._next_button = 1

    async def send(self, reply: Reply) -> int:
        """Print a message with its buttons; return its id."""
        message_id = self._next_id
        self._next_id += 1
        self._print(reply, prefix="")
        return message_id

    async def edit(self, message_id: int, reply: Reply) -> None:
        """Print the new text of an edited message."""
        self._print(reply, prefix=f"(message {message_id} updated) ")

    def newest_button(self, label: str) -> int | None:
        """The number of the newest button whose label starts with ``label`` (any case)."""
        wanted = label.casefold()
        found = [n for n, text in self.labels.items() if text.casefold().startswith(wanted)]
        return max(found, default=None)

    async def notify(self, text: str) -> None:
        """Show a button toast."""
        self._out(f"  · {text}")

    async def send_photo(self, png: bytes, caption_html: str) -> int:
        """Write the picture to a file and print its path and caption."""
        message_id = self._next_id
        self._next_id += 1
        folder = self._photo_dir or Path(tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"chart-{message_id}.png"
        await asyncio.to_thread(path.write_bytes, png)
        self.photos.append(path)
        self._out(f"[picture: {path}] {render.to_plain_text(caption_html)}")
        return message_id

    async def set_user_menu(self, user_id: int, commands: Mapping[str, str]) -> None:
        """A terminal has no command menu: nothing to refresh."""

    def _print(self, reply: Reply, prefix: str) -> None:
        self._out(prefix + render.to_plain_text(reply.html))
        if reply.buttons:
            labels = []
            for button in reply.buttons:
                number = self._next_button
                self._next_button += 1
                self.buttons[number] = (self._next_id - 1, button.data)
                self.labels[number] = render.to_plain_text(button.label)
                labels.append(f"[{number}] {button.label}")
            self._out(render.console_buttons(labels))


class ConsoleNotifier:
    """The Notifier port of the demo: alerts appear in the console chat, buttons and all."""

    def __init__(self, chat: ConsoleChat) -> None:
        self._chat = chat

    async def send(self, chat_id: int, thread_id: int | None, message: OutgoingMessage) -> int:
        """Print the alert message; its buttons can be pressed by number."""
        buttons = tuple(Button(b.label, b.data) for row in message.buttons for b in row)
        return await self._chat.send(Reply(message.html, buttons))

    async def send_photo(
        self,
        chat_id: int,
        thread_id: int | None,
        png: bytes,
        caption_html: str,
        reply_to: int | None = None,
    ) -> int:
        """Write an alert's chart to a file beside the demo and print where."""
        return await self._chat.send_photo(png, caption_html)

    async def close(self) -> None:
        """Nothing to release."""


async def run_console(
    dispatcher: Dispatcher,
    user_id: int,
    user_name: str,
    lines: AsyncIterator[str],
    out: Printer = print,
    chat: ConsoleChat | None = None,
) -> None:
    """Read commands from ``lines`` until EOF or ``/quit`` and answer them on ``out``."""
    chat = chat or ConsoleChat(out)
    async for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line in {"/quit", "/exit", "quit", "exit"}:
            break
        press = line.removeprefix("/press").strip()
        if line.startswith("/press ") and not press.isdigit():
            press = str(chat.newest_button(press) or press)
        if press.isdigit():
            target = chat.buttons.get(int(press))
            if target is None:
                out(f"no button {press}")
                continue
            message_id, data = target
            request = Request(
                user_id, user_name, user_id, "console", button_data=data, message_id=message_id
            )
            await dispatcher.handle_button(request, chat)
            continue
        request = Request(user_id, user_name, user_id, "console", text=line)
        await dispatcher.handle_command(request, chat)


async def stdin_lines(prompt: str = "replbot> ") -> AsyncIterator[str]:
    """Lines typed on stdin, read by a daemon thread so Ctrl-C never waits for Enter."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def reader() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="console-stdin", daemon=True).start()
    while True:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = await queue.get()
        if line is None:
            return
        yield line


async def given_lines(lines: Iterable[str], echo: Printer | None = None) -> AsyncIterator[str]:
    """Lines from a list (``--exec``), echoed like typed input."""
    for line in lines:
        if echo is not None:
            echo(f"replbot> {line}")
        yield line

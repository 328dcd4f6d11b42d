"""The message catalogs: every text the code asks for has a Russian translation, the Russian
plurals take their three forms, and every reply type renders valid Telegram HTML within 4096
characters in both languages."""

from __future__ import annotations

import dataclasses
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from bot.models import (
    Alert,
    AlertNotice,
    AlertRule,
    AlertState,
    NoticeKind,
    Severity,
)
from handlers import i18n, render
from handlers.i18n import _, ngettext

ROOT = Path(__file__).resolve().parents[2]
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2), "command": (3,)}
ALLOWED_TAGS = {"b", "i", "code", "pre", "a", "u", "s"}


def _code_msgids() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _ctx in extract_from_dir(
        str(ROOT / "handlers"), keywords=KEYWORDS, comment_tags=()
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


def _russian() -> dict[str, object]:
    with i18n.catalog_path("ru").open("rb") as po:
        catalog = read_po(po, locale="ru")
    return {m.id[0] if isinstance(m.id, tuple) else m.id: m.string for m in catalog if m.id}


def test_every_text_the_code_asks_for_has_a_russian_translation() -> None:
    """A new _() / ngettext() / command summary without a Russian msgstr fails here (update
    the catalog with pybabel extract + update, see handlers/i18n.py)."""
    code_ids = _code_msgids()
    russian = _russian()
    assert len(code_ids) > 250  # the extraction really found the wording
    missing = sorted(code_ids - set(russian))
    assert not missing, missing
    empty = sorted(
        key
        for key, value in russian.items()
        if key in code_ids and (not value or (isinstance(value, tuple) and not all(value)))
    )
    assert not empty, empty
    assert not sorted(set(russian) - code_ids), "stale entries in the Russian catalog"


def test_the_russian_catalog_keeps_every_placeholder() -> None:
    """A translation that drops or renames a {placeholder} would raise or lie at runtime."""
    for key, value in _russian().items():
        forms = value if isinstance(value, tuple) else (value,)
        wanted = set(re.findall(r"\{(\w*)\}", key))
        for form in forms:
            assert set(re.findall(r"\{(\w*)\}", str(form))) <= wanted, (key, form)
            # the count may be implicit in a singular form, never anything else
            assert wanted - set(re.findall(r"\{(\w*)\}", str(form))) <= {"n", "count"}, key


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (1, "1 слот"),
        (2, "2 слота"),
        (4, "4 слота"),
        (5, "5 слотов"),
        (11, "11 слотов"),
        (21, "21 слот"),
        (22, "22 слота"),
        (25, "25 слотов"),
        (111, "111 слотов"),
    ],
)
def test_russian_plurals_take_three_forms(count: int, text: str) -> None:
    with i18n.language("ru"):
        assert ngettext("{count} slot", "{count} slots", count).format(count=count) == text


def test_status_headline_declines_replicas_by_the_total() -> None:
    with i18n.language("ru"):
        form = ngettext(
            "{streaming}/{total} replicas streaming", "{streaming}/{total} replicas streaming", 5
        )
        assert form.format(streaming=4, total=5) == "поток получают 4 из 5 реплик"
        form = ngettext(
            "{streaming}/{total} replicas streaming", "{streaming}/{total} replicas streaming", 1
        )
        assert form.format(streaming=1, total=1) == "поток получают 1 из 1 реплики"


def test_language_is_per_context_and_english_is_the_source() -> None:
    assert _("dry run: nothing was changed") == "dry run: nothing was changed"
    with i18n.language("ru"):
        assert _("dry run: nothing was changed") == "пробный запуск: ничего не изменено"
        assert render.human_duration(150) == "2 мин 30 с"
    assert i18n.current_language() == "en"
    assert i18n.normalize("ru-RU") == "ru" and i18n.normalize("de") is None


class _TelegramHtml(HTMLParser):
    """Fails on tags Telegram does not accept and on unbalanced tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in ALLOWED_TAGS, tag
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack)
        self.stack.pop()


def assert_telegram_html(text: str) -> None:
    """``text`` is valid Telegram HTML and fits one message."""
    assert 0 < len(text) <= render.TELEGRAM_LIMIT, len(text)
    parser = _TelegramHtml()
    parser.feed(text)
    parser.close()
    assert not parser.stack, parser.stack
    assert "<" not in re.sub(r"</?(b|i|code|pre|a|u|s)>", "", text), text


def _alert(rule: AlertRule, **figures: object) -> Alert:
    return Alert(
        id=7,
        rule=rule,
        cluster="main",
        node="pg2",
        subject="pg2",
        severity=Severity.WARNING,
        figures=dict(figures),  # type: ignore[arg-type]
        state=AlertState.FIRING,
        first_seen=1000.0,
        fired_at=1000.0,
    )


def _replies() -> list[str]:
    """One rendering of every alert rule and of the generic replies (the command replies are
    rendered by the Russian command tour in test_i18n_tour.py)."""
    texts = [
        render.failure("x <y>"),
        render.internal_error("abc"),
        render.not_run_offline(),
        render.not_run_forwarded(),
        render.unknown_command("nope"),
        render.cancelled("rebuild"),
        render.alerts_unavailable(),
        render.alert_chat_refusing(-100, "Forbidden", -200),
        render.alert_chat_refusing(-100, "Forbidden", None),
        render.alert_redirected(-100),
        render.target_muted("main", "pg2", 3600),
        render.target_unmuted("main", None, 3),
        render.demo_replica_changed("pg2", True, 5),
        render.demo_replica_diverged("pg2", 3, 2),
        render.demo_waited(5),
        render.demo_param_lowered("pg2", "FATAL: x"),
    ]
    figures = {
        "role": "replica",
        "reason": "connection refused",
        "lag_bytes": 5 << 20,
        "lag_s": 42.0,
        "retained": 2 << 30,
        "warning": 1 << 30,
        "critical": 4 << 30,
        "rate": 1 << 20,
        "eta_lost_s": 600.0,
        "safe_wal_size": 1 << 30,
        "used_by": "pg2",
        "wal_status": "unreserved",
        "actual": "primary",
        "configured": "replica",
        "was": "1",
        "now": "2",
        "margin": 1 << 20,
        "kept": 1 << 30,
        "margin_pct": 10,
    }
    for rule in AlertRule:
        alert = _alert(rule, **figures)
        for kind in NoticeKind:
            texts.append(render.alert_notice(AlertNotice(alert=alert, kind=kind, at=1100.0)))
        texts.append(render.alerts_firing([alert], [], 1100.0))
        texts.append(render.alert_acknowledged(alert))
    return texts


@pytest.mark.parametrize("language", ["en", "ru"])
def test_every_reply_type_is_valid_telegram_html_in_both_languages(language: str) -> None:
    with i18n.language(language):
        for text in _replies():
            for chunk in render.split_message(text):
                assert_telegram_html(chunk)


@pytest.mark.parametrize("language", [lang for lang in i18n.LANGUAGES if lang != "en"])
def test_the_committed_mo_is_the_compiled_po(language: str) -> None:
    """The bot reads the committed .mo; it must be exactly what the .po compiles to (run
    ``pybabel compile -d handlers/locale -D replbot`` after editing a .po)."""
    with i18n.catalog_path(language).open("rb") as po:
        catalog = read_po(po, locale=language, domain=i18n.DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    assert i18n.catalog_path(language, ".mo").read_bytes() == compiled.getvalue()
    assert i18n.translations(language).info()["language"] == language


def test_alert_messages_speak_their_clusters_language() -> None:
    """Alert chats get the cluster's language (else telegram.language); a message mixing
    clusters of different languages falls back to telegram.language."""
    from handlers.alerts import AlertRenderer

    renderer = AlertRenderer(3600, languages={"main": "ru"}, default_language="en")
    main = _alert(AlertRule.NOT_STREAMING)
    other = dataclasses.replace(main, id=8, cluster="dr")
    [russian] = renderer.messages([AlertNotice(NoticeKind.FIRING, main, 1100.0)])
    assert "реплика pg2 не получает поток" in russian.html
    assert [b.label for row in russian.buttons for b in row] == ["👍 Принято #7", "🔕 Тихо 1 ч #7"]
    [mixed] = renderer.messages(
        [
            AlertNotice(NoticeKind.FIRING, main, 1100.0),
            AlertNotice(NoticeKind.FIRING, other, 1100.0),
        ]
    )
    assert "replica pg2 is not streaming" in mixed.html and "2 alerts" in mixed.html
    assert i18n.current_language() == "en"

"""Timeline histories: behind vs diverged, and the fork point pg_rewind would find."""

from __future__ import annotations

import pytest

from bot.services.repair.timeline import (
    Divergence,
    HistoryEntry,
    HistoryParseError,
    classify_by_timeline,
    classify_divergence,
    int_to_lsn,
    lsn_to_int,
    parse_history,
)

TLI2 = "1\t0/3000060\tno recovery target specified\n"
TLI3 = TLI2 + "2\t0/50000A0\tno recovery target specified\n"


def test_lsn_round_trip() -> None:
    assert lsn_to_int("0/3000060") == 0x3000060
    assert lsn_to_int("1/0") == 1 << 32
    assert int_to_lsn(0x1_0300_0060) == "1/3000060"
    with pytest.raises(HistoryParseError):
        lsn_to_int("03000060")


def test_parse_history_reads_lines_and_skips_comments() -> None:
    text = "# a comment\n\n" + TLI3
    assert parse_history(text) == (
        HistoryEntry(1, 0x3000060, "no recovery target specified"),
        HistoryEntry(2, 0x50000A0, "no recovery target specified"),
    )
    assert parse_history("") == ()


@pytest.mark.parametrize("bad", ["x\t0/1\tr", "1\tnot-an-lsn", "2\t0/5\n1\t0/6", "1"])
def test_parse_history_refuses_garbage(bad: str) -> None:
    with pytest.raises(HistoryParseError):
        parse_history(bad)


def test_promoted_replica_diverged_at_its_promotion() -> None:
    # the replica was promoted at 0/3000060 (its TLI 2), the primary went on on TLI 1
    found = classify_divergence(2, "0/3002000", TLI2, 1, "", "0/3100000")
    assert found == Divergence(
        "0/3000060",
        1,
        "diverged",
        target_timeline=2,
        target_lsn="0/3002000",
        primary_timeline=1,
        wal_past_fork_bytes=0x3002000 - 0x3000060,
    )
    assert found.rewindable


def test_old_primary_after_failover_diverged_at_the_failover() -> None:
    # the new primary was promoted at 0/3000060; the old one wrote on TLI 1 past it
    found = classify_divergence(1, "0/3400000", "", 2, TLI2, "0/3100000")
    assert found is not None
    assert (found.kind, found.fork_lsn, found.fork_timeline) == ("diverged", "0/3000060", 1)
    assert found.wal_past_fork_bytes == 0x3400000 - 0x3000060


def test_old_primary_that_stopped_before_the_switch_is_behind() -> None:
    assert classify_divergence(1, "0/3000060", "", 2, TLI2, "0/3100000") is None


def test_target_behind_on_tli1_while_primary_switched_later_is_behind() -> None:
    assert classify_divergence(1, "0/2000000", "", 2, TLI2, "0/9000000") is None
    assert classify_divergence(1, "0/2000000", "", 3, TLI3, "0/9000000") is None


def test_target_on_tli2_behind_a_primary_on_tli3_is_behind() -> None:
    assert classify_divergence(2, "0/4000000", TLI2, 3, TLI3, "0/9000000") is None


def test_target_on_tli2_past_the_switch_to_tli3_diverged_there() -> None:
    found = classify_divergence(2, "0/6000000", TLI2, 3, TLI3, "0/9000000")
    assert found is not None
    assert (found.kind, found.fork_lsn, found.fork_timeline) == ("diverged", "0/50000A0", 2)


def test_same_timeline_behind_or_equal_is_not_a_divergence() -> None:
    assert classify_divergence(1, "0/3000000", "", 1, "", "0/3000000") is None
    assert classify_divergence(2, "0/3000100", TLI2, 2, TLI2, "0/4000000") is None


def test_same_timeline_ahead_of_the_primary_is_not_rewindable() -> None:
    found = classify_divergence(1, "0/5000000", "", 1, "", "0/4000000")
    assert found is not None and found.kind == "ahead" and not found.rewindable
    assert found.fork_lsn == "0/4000000"


def test_two_promotions_from_the_same_primary_diverge_at_the_earlier_one() -> None:
    # both were promoted from TLI 1 separately: each has its own TLI 2 / TLI 3 branch
    target = "1\t0/3000060\tpromoted\n"
    primary = "1\t0/2800000\tpromoted\n"
    found = classify_divergence(2, "0/3500000", target, 2, primary, "0/9000000")
    assert found is not None
    assert (found.kind, found.fork_lsn, found.fork_timeline) == ("diverged", "0/2800000", 1)


def test_parsed_entries_are_accepted_as_well_as_text() -> None:
    entries = parse_history(TLI2)
    assert classify_divergence(2, "0/3002000", entries, 1, (), "0/3100000") == (
        classify_divergence(2, "0/3002000", TLI2, 1, "", "0/3100000")
    )


def test_the_coarse_answer_only_compares_timelines() -> None:
    assert classify_by_timeline(1, 1, "0/1") is None
    assert classify_by_timeline(None, 1, "0/1") is None
    assert classify_by_timeline(2, 1, "0/1") == Divergence("0/1", 2, "diverged")

"""bench repair reads the bytes pg_rewind moved from its own output."""

from __future__ import annotations

from bench.repair import MB, parse_rewind_output

# pg_rewind 15 --progress over a PTY: the progress line is rewritten with \r, lines end in \r\n.
REWIND_OUTPUT = (
    "pg_rewind: connected to server\r\n"
    "pg_rewind: servers diverged at WAL location 0/17A05818 on timeline 1\r\n"
    "pg_rewind: rewinding from last common checkpoint at 0/17A057A0 on timeline 1\r\n"
    "pg_rewind: reading source file list\r\n"
    "pg_rewind: reading target file list\r\n"
    "pg_rewind: reading WAL in target\r\n"
    "pg_rewind: need to copy 89 MB (total source directory size is 1143 MB)\r\n"
    "    0/91236 kB (0%) copied\r"
    "45102/91236 kB (49%) copied\r"
    "91236/91236 kB (100%) copied\r\n"
    "pg_rewind: creating backup label and updating control file\r\n"
    "pg_rewind: syncing target data directory\r\n"
    "pg_rewind: Done!\r\n"
)


def test_the_last_progress_line_gives_the_bytes_copied_and_the_plan_its_estimate() -> None:
    copied, planned = parse_rewind_output(REWIND_OUTPUT)
    assert copied == 91236 * 1024
    assert planned == 89 * MB


def test_output_without_progress_or_plan_gives_none() -> None:
    assert parse_rewind_output(
        "pg_rewind: source and target cluster are on the same timeline\n"
    ) == (
        None,
        None,
    )

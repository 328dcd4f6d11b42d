"""The application_name a replica's own configuration gives its walreceiver, read from the
preflight's ``postgres -C`` output (a replica that is down has no walsender to show it), and
the order in which the plan picks the new copy's name."""

from __future__ import annotations

import dataclasses

import pytest

from bot.models import NodeSnapshot
from bot.services.rebuild.preflight import (
    Preflight,
    configured_receiver_name,
    conninfo_application_name,
)
from handlers.render.check import item_detail
from tests.unit.fakes import slot, walsender
from tests.unit.test_rebuild_identity import receiver, replica_config

SECRET = "s3cr3t pass'word"


@pytest.mark.parametrize(
    ("conninfo", "name"),
    [
        ("host=db1 port=5432 user=repl application_name=pg2", "pg2"),
        ("host=db1 application_name = 'my standby' user=repl", "my standby"),
        (r"application_name='it\'s \\ here' host=db1", "it's \\ here"),
        (r"application_name=a\ b host=db1", "a b"),
        ("host=db1 user=repl passfile='/x/.pgpass'", ""),
        ("", ""),
        ("host=db1 application_name=one application_name=two", "two"),
        ("postgresql://repl@db1:5432/?application_name=uri_name&sslmode=require", "uri_name"),
        ("host=db1 garbage", ""),
    ],
)
def test_the_conninfo_parser_finds_application_name(conninfo: str, name: str) -> None:
    assert conninfo_application_name(conninfo) == name


def test_a_password_in_the_conninfo_is_never_returned() -> None:
    conninfo = r"host=db1 password='s3cr3t pass\'word' user=repl"
    assert conninfo_application_name(conninfo) == ""
    output = f"max_connections=100\nprimary_conninfo={conninfo} application_name=x\ncluster_name=\n"
    found = configured_receiver_name(output)
    assert found == ("x", "primary_conninfo")
    assert SECRET not in repr(found)


@pytest.mark.parametrize(
    ("output", "found"),
    [
        ("primary_conninfo=host=db1 application_name=a\ncluster_name=c\n", "a"),
        ("primary_conninfo=host=db1\ncluster_name=main_pg2\n", "main_pg2"),
        ("primary_conninfo=host=db1\ncluster_name=\n", ""),
        ("max_connections=100\n", ""),
    ],
)
def test_conninfo_before_cluster_name(output: str, found: str) -> None:
    assert configured_receiver_name(output)[0] == found


def primary_with(holder: str | None) -> NodeSnapshot:
    """The primary's view: slot pg2 held by a walsender named ``holder`` (None: inactive)."""
    senders = () if holder is None else (walsender(41, holder, "pg2"),)
    return dataclasses.replace(
        receiver(in_recovery=False),
        node="pg1",
        receiver=None,
        slots=(slot("pg2", holder is not None, 41),),
        walsenders=senders,
    )


CONF = ("custom_down", "primary_conninfo")


@pytest.mark.parametrize(
    ("configured", "holder", "conf", "kept", "planned", "source"),
    [
        ("cfg", "seen", CONF, "seen", "cfg", "from the config"),
        (None, "seen", CONF, "seen", "seen", "kept"),
        (None, None, CONF, "custom_down", "custom_down", "from the replica's primary_conninfo"),
        (None, None, ("main", "cluster_name"), "main", "main", "from its cluster_name"),
        (None, None, ("walreceiver", "cluster_name"), "", "pg2", "its node name"),
        (None, None, ("pg_basebackup", "cluster_name"), "", "pg2", "its node name"),
        (None, None, ("", ""), "", "pg2", "its node name"),
        ("cfg", None, CONF, "custom_down", "cfg", "from the config"),
    ],
)
def test_name_precedence_config_walsender_replica_conf_node_name(
    configured: str | None,
    holder: str | None,
    conf: tuple[str, str],
    kept: str,
    planned: str,
    source: str,
) -> None:
    _, node = replica_config(configured)
    seen, _, item = Preflight._application_name_item(node, primary_with(holder), conf)
    assert seen == kept
    text = item_detail(item)
    assert text.endswith(f"the new copy streams as {planned} ({source})"), text

"""The throwaway PostgreSQL server that tests and benchmarks run against."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from ogsync.testing.postgres import (
    PostgresServer,
    find_postgres_binaries,
    kill_connections,
    throwaway_postgres,
)


def status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict; empty once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def running(pid: int) -> bool:
    # A stopped server whose parent has not reaped it yet shows as a zombie: not running.
    state = status(pid).get("State", "")
    return bool(state) and not state.startswith("Z")


def test_server_accepts_password_login_over_tcp(postgres_server: PostgresServer) -> None:
    assert postgres_server.url == (
        f"postgresql://ogsync:{postgres_server.password}@127.0.0.1:{postgres_server.port}/ogsync"
    )
    with psycopg.connect(postgres_server.url) as conn:
        user, db, addr = conn.execute(
            "SELECT current_user, current_database(), inet_server_addr()::text"
        ).fetchone() or (None, None, None)
        assert (user, db) == ("ogsync", "ogsync")
        assert addr is not None and addr.startswith("127.0.0.1")
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'ogsync'"
        ).fetchone()
        assert owner == ("ogsync",)
        conn.execute("CREATE TEMP TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
        assert conn.execute("SELECT sum(x) FROM t").fetchone() == (3,)


def test_wrong_password_is_refused(postgres_server: PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host="127.0.0.1",
            port=postgres_server.port,
            user="ogsync",
            password="not-the-password",
            dbname="ogsync",
            connect_timeout=10,
        )


def test_listens_on_loopback_only_with_fast_settings(postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_server.admin_url) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                (
                    [
                        "listen_addresses",
                        "fsync",
                        "synchronous_commit",
                        "full_page_writes",
                        "max_connections",
                        "unix_socket_directories",
                    ],
                ),
            ).fetchall()
        )
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "50",
        "unix_socket_directories": str(postgres_server.socket_dir),
    }


def test_server_does_not_run_as_root(postgres_server: PostgresServer) -> None:
    uids = status(postgres_server.pid)["Uid"].split()
    assert uids and all(int(uid) != 0 for uid in uids), uids
    if os.geteuid() != 0:
        assert int(uids[0]) == os.geteuid()


def test_terminating_backends_breaks_live_connections(postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_server.url, autocommit=True) as victim:
        assert victim.execute("SELECT 1").fetchone() == (1,)
        assert kill_connections(postgres_server) >= 1
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
        assert victim.closed or victim.broken
    # The server itself carries on.
    with psycopg.connect(postgres_server.url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_exit_stops_the_server_and_removes_its_files() -> None:
    with throwaway_postgres(password="another one") as pg:
        assert running(pg.pid)
        assert pg.data_dir.is_dir()
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("ogsync",)
    assert not running(pg.pid)
    assert not pg.base_dir.exists()


def test_an_error_inside_still_stops_and_cleans_up() -> None:
    with pytest.raises(ZeroDivisionError), throwaway_postgres() as pg:
        1 / 0  # noqa: B018
    assert not running(pg.pid)
    assert not pg.base_dir.exists()


def test_missing_postgresql_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="install Debian's `postgresql` package") as info:
        find_postgres_binaries(path=str(tmp_path), debian_root=str(tmp_path / "none"))
    assert "\n" not in str(info.value)

"""A throwaway PostgreSQL server for tests and benchmarks.

`throwaway_postgres()` runs `initdb` into a fresh temporary directory, starts a server that
listens only on 127.0.0.1 (on a free port) and on a unix socket inside that directory, creates
a role `ogsync` owning a database `ogsync`, and on exit stops the server and removes the
directory. PostgreSQL refuses to run as root, so under root (as in CI) the server runs as the
`postgres` system user, or as a system user `ogsync-pg` created for the purpose.

    with throwaway_postgres() as pg:
        psycopg.connect(pg.url)

The settings trade durability for speed (fsync off and so on): never keep data in it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

__all__ = [
    "PostgresServer",
    "find_postgres_binaries",
    "kill_connections",
    "throwaway_postgres",
]

# Where Debian's `postgresql-NN` packages put the server programs (not on PATH).
DEBIAN_ROOT = "/usr/lib/postgresql"
PROGRAMS = ("initdb", "pg_ctl", "postgres")
# The user the server runs as when we are root and no `postgres` user exists.
FALLBACK_USER = "ogsync-pg"
ROLE = "ogsync"
DATABASE = "ogsync"
SUPERUSER = "postgres"
# The system user Debian's package makes; the server runs as it when we are root.
SYSTEM_USER = "postgres"

SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "128MB",
    "max_connections": "50",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway server: connect with `url` (the `ogsync` role, password over TCP)."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    socket_dir: Path
    data_dir: Path
    base_dir: Path
    pid: int
    os_user: str
    bin_dir: Path

    @property
    def url(self) -> str:
        """`postgresql://ogsync:<password>@127.0.0.1:<port>/ogsync`."""
        password = quote(self.password, safe="")
        return f"postgresql://{self.user}:{password}@{self.host}:{self.port}/{self.dbname}"

    @property
    def admin_url(self) -> str:
        """The superuser `postgres` over the unix socket (trusted: no password)."""
        sock = quote(str(self.socket_dir), safe="")
        return f"postgresql://{SUPERUSER}@/postgres?host={sock}&port={self.port}"

    def terminate_backends(self, *, dbname: str | None = None) -> int:
        """End every client connection but the one this uses (as lost connections look).

        Waits until each has gone. Returns how many were ended.
        """
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            wait = ", 10000" if conn.info.server_version >= 140000 else ""
            query = (
                f"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid{wait}))"
                " FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                " AND (%(db)s::text IS NULL OR datname = %(db)s::text)"
            )
            row = conn.execute(query, {"db": dbname}).fetchone()
        return int(row[0]) if row else 0


def kill_connections(server: PostgresServer, *, dbname: str | None = None) -> int:
    """End every client connection to `server` (see `PostgresServer.terminate_backends`)."""
    return server.terminate_backends(dbname=dbname)


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", Path(path).parent.name))


def find_postgres_binaries(*, path: str | None = None, debian_root: str = DEBIAN_ROOT) -> Path:
    """The directory holding initdb, pg_ctl and postgres: on PATH, else Debian's newest."""
    found = shutil.which("initdb", path=path)
    if found:
        bin_dir = Path(found).resolve().parent
        if all((bin_dir / p).is_file() for p in PROGRAMS):
            return bin_dir
    candidates = sorted(glob.glob(f"{debian_root}/*/bin"), key=_version_key, reverse=True)
    for candidate in candidates:
        if all(os.access(Path(candidate) / p, os.X_OK) for p in PROGRAMS):
            return Path(candidate)
    raise RuntimeError(
        "PostgreSQL server programs (initdb, pg_ctl, postgres) not found on PATH or under "
        f"{debian_root}/*/bin: install Debian's `postgresql` package "
        "(apt-get install postgresql)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server when we are root (None: ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in (SYSTEM_USER, FALLBACK_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER],
        capture_output=True,
        text=True,
    )
    try:  # exit 9: made meanwhile by another process, which is fine
        return pwd.getpwnam(FALLBACK_USER)
    except KeyError:
        raise RuntimeError(
            f"running as root, and could not create user {FALLBACK_USER} to run PostgreSQL as:"
            f" {result.stderr.strip()}"
        ) from None


def _as_user(user: pwd.struct_passwd | None, argv: Sequence[str]) -> list[str]:
    if user is None:
        return list(argv)
    if shutil.which("runuser"):
        return ["runuser", "-u", user.pw_name, "--", *argv]
    return [
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--init-groups",
        "--",
        *argv,
    ]


def _base_parent(user: pwd.struct_passwd | None) -> str | None:
    """A parent for the temp dir that the server's user can reach (root's TMPDIR may not be)."""
    parent = Path(tempfile.gettempdir()).resolve()
    if user is None:
        return None
    for d in (parent, *parent.parents):
        if not os.stat(d).st_mode & 0o001:
            return "/tmp"
    return None


def _run(
    argv: list[str], *, cwd: Path, env: dict[str, str], what: str, log: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        if log is not None and log.exists():
            detail += "\n--- server log ---\n" + log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {detail}")
    return result


def _read_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return "\nState:\tZ" not in status


@contextlib.contextmanager
def throwaway_postgres(
    *, password: str = "ogsync-test-password", startup_timeout: int = 60
) -> Iterator[PostgresServer]:
    """Start a fresh PostgreSQL server; stop it and delete its files on exit, even on errors.

    Raises RuntimeError (with the reason) if it cannot: no PostgreSQL installed, and so on.
    """
    bin_dir = find_postgres_binaries()
    user = _server_user()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", TZ="UTC")
    initdb, pg_ctl = str(bin_dir / "initdb"), str(bin_dir / "pg_ctl")

    base = Path(tempfile.mkdtemp(prefix="ogsync-pg-", dir=_base_parent(user)))
    data_dir, socket_dir, log = base / "data", base / "run", base / "server.log"
    started = False
    try:
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        socket_dir.mkdir(mode=0o700)
        if user is not None:
            for p in (base, pwfile, socket_dir):
                os.chown(p, user.pw_uid, user.pw_gid)

        initdb_argv = [initdb, "-D", str(data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}"]
        initdb_argv += ["--auth-local=trust", "--auth-host=scram-sha-256"]
        initdb_argv += ["--locale=C", "--encoding=UTF8", "--no-sync"]
        _run(_as_user(user, initdb_argv), cwd=base, env=env, what="initdb")
        pwfile.unlink()

        with open(data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# ogsync.testing: a throwaway server, fast and unsafe\n")
            conf.write(f"unix_socket_directories = '{socket_dir}'\n")
            for key, value in SETTINGS.items():
                conf.write(f"{key} = {value}\n")

        for attempt in range(5):  # the free port may be taken before the server binds it
            port = _free_port()
            start = [pg_ctl, "start", "-w", "-t", str(startup_timeout), "-D", str(data_dir)]
            start += ["-l", str(log), "-o", f"-p {port}"]
            log.unlink(missing_ok=True)
            try:
                started = True
                _run(_as_user(user, start), cwd=base, env=env, what="pg_ctl start", log=log)
                break
            except RuntimeError:
                started = (data_dir / "postmaster.pid").exists()
                if started or attempt == 4 or "already in use" not in log.read_text():
                    raise

        server = PostgresServer(
            host="127.0.0.1",
            port=port,
            user=ROLE,
            password=password,
            dbname=DATABASE,
            socket_dir=socket_dir,
            data_dir=data_dir,
            base_dir=base,
            pid=_read_pid(data_dir),
            os_user=user.pw_name if user is not None else pwd.getpwuid(os.geteuid()).pw_name,
            bin_dir=bin_dir,
        )
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(ROLE), sql.Literal(password)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DATABASE), sql.Identifier(ROLE)
                )
            )
        yield server
    finally:
        try:
            if started:
                _stop(user, pg_ctl, data_dir, base, env)
        finally:
            shutil.rmtree(base, ignore_errors=True)


def _stop(
    user: pwd.struct_passwd | None, pg_ctl: str, data_dir: Path, base: Path, env: dict[str, str]
) -> None:
    try:
        pid: int | None = _read_pid(data_dir)
    except (OSError, ValueError):
        pid = None
    stop = [pg_ctl, "stop", "-m", "immediate", "-w", "-t", "30", "-D", str(data_dir)]
    result = subprocess.run(
        _as_user(user, stop), cwd=base, env=env, stdin=subprocess.DEVNULL, capture_output=True
    )
    if pid is None or result.returncode == 0:
        return
    # pg_ctl could not stop it: make sure nothing is left running over a deleted directory.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)

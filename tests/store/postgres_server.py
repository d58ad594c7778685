"""A real PostgreSQL for the store tests: initdb into a temporary directory, postgres on a free
loopback port, readiness by connecting, fast shutdown at the end.

PostgreSQL refuses to run as root; when the tests run as root the server runs as the `postgres`
system user (created by the Debian package) through `runuser`, in a directory owned by it.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from processes import Process, free_port, spawn, wait_until

SUPERUSER = "spanscope"


def binaries() -> Path | None:
    """The bin directory of the newest installed PostgreSQL, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root and there is no `postgres` user to run PostgreSQL as") from None
    return [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--", *cmd]


@dataclass
class PostgresServer:
    process: Process
    port: int
    workdir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        self.process.stop(sig=signal.SIGINT)  # "fast" shutdown: does not wait for clients
        shutil.rmtree(self.workdir, ignore_errors=True)


def start(bin_dir: Path, timeout: float = 30.0) -> PostgresServer:
    # Not under pytest's tmp dirs: those are private to the user running pytest (root).
    workdir = Path(tempfile.mkdtemp(prefix="spanscope-pg-"))
    data, sockets = workdir / "data", workdir / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (workdir, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    try:
        subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                                        "--auth=trust", "-E", "UTF8", "--no-sync"]),
                       check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{exc.stdout.decode()}\n{exc.stderr.decode()}") from None
    port = free_port()
    proc = spawn(_as_server_user([str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                                  "-p", str(port), "-k", str(sockets), "-c", "fsync=off",
                                  "-c", "full_page_writes=off", "-c", "max_connections=100"]),
                 workdir, "postgres")
    server = PostgresServer(proc, port, workdir)

    def accepts_connections() -> bool:
        try:
            with psycopg.connect(server.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    try:
        wait_until(accepts_connections, timeout, 0.05, "postgres to accept connections", proc)
    except (RuntimeError, TimeoutError) as exc:
        log = proc.log()
        server.stop()
        raise RuntimeError(f"{exc}:\n{log}") from None
    return server

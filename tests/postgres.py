"""A throwaway PostgreSQL cluster for tests and benchmarks.

``initdb`` into a fresh temporary directory, then ``pg_ctl start`` with a Unix socket in
that directory and ``listen_addresses = ''``: no TCP at all. PostgreSQL refuses to run
as root, so as root the server runs as the ``postgres`` user Debian's package creates
(the directory is handed to it); otherwise as the current user. Only this cluster is
ever stopped, by its data directory (``pg_ctl stop``).
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

#: where Debian's postgresql packages put the server programs (not on PATH)
DEBIAN_BIN_DIRS = "/usr/lib/postgresql/*/bin"
#: the superuser initdb creates (whoever runs it)
SUPERUSER = "postgres"


def find_bin_dir() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: Debian's newest version, else PATH."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))

    debian = sorted(Path("/").glob(DEBIAN_BIN_DIRS.lstrip("/")), key=version)
    for candidate in reversed(debian):
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


class PostgresCluster:
    """One throwaway cluster: ``start`` (initdb on the first), ``stop``, ``running``;
    ``dsn`` to reach a database on the Unix socket. ``durable=False`` (tests) turns
    fsync and synchronous commit off; a benchmark keeps PostgreSQL's defaults."""

    def __init__(self, bin_dir: Path | None = None, *, durable: bool = False) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise FileNotFoundError("PostgreSQL's initdb and pg_ctl not found")
        self.bin_dir = found
        self.durable = durable
        self._owner = pwd.getpwnam(SUPERUSER) if os.geteuid() == 0 else None
        self.base = Path(tempfile.mkdtemp(prefix="ivr-pg-"))
        self.data = self.base / "data"
        self.socket_dir = self.base / "socket"
        self.log = self.base / "postgres.log"
        self._names = itertools.count(1)
        self.socket_dir.mkdir()
        if self._owner is not None:  # the server's user must own its directories
            for path in (self.base, self.socket_dir):
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A server program, as the server's user."""
        user: dict[str, Any] = {}
        if self._owner is not None:
            user = {"user": self._owner.pw_uid, "group": self._owner.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            **user,
        )

    def _initdb(self) -> None:
        done = self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "--no-sync",
            "--locale=C", "--encoding=UTF8", "--no-instructions",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}{done.stderr}")
        settings = [
            "listen_addresses = ''",  # Unix socket only
            f"unix_socket_directories = '{self.socket_dir}'",
            "max_connections = 100",
        ]
        if not self.durable:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests/postgres.py\n" + "\n".join(settings) + "\n")

    def start(self) -> None:
        """Start the server (creating the cluster the first time); wait until it
        accepts connections."""
        if not self.data.exists():
            self._initdb()
        done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "start")
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}{done.stderr}{log}")

    def stop(self, mode: str = "fast") -> None:
        """Stop this cluster's server (``fast``: roll back and disconnect sessions;
        ``immediate``: no shutdown checkpoint)."""
        if self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        """Whether this cluster's server is up."""
        return (
            self.data.exists()
            and self._run("pg_ctl", "-D", str(self.data), "status").returncode == 0
        )

    def remove(self) -> None:
        """Stop the server and delete the cluster's directory."""
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def dsn(self, dbname: str = "postgres", options: str = "") -> str:
        """A libpq connection string to ``dbname`` on the cluster's socket."""
        dsn = f"host={self.socket_dir} port=5432 user={SUPERUSER} dbname={dbname}"
        return f"{dsn} options='{options}'" if options else dsn

    def url(self, dbname: str = "postgres") -> str:
        """The same as a ``postgresql://`` URL (what a portal configuration names)."""
        return f"postgresql://{SUPERUSER}@/{dbname}?host={self.socket_dir}&port=5432"

    def admin(self, sql: str) -> None:
        """Run one statement as the superuser (outside a transaction)."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.encode())

    def new_database(self) -> str:
        """A new empty database; its name (``dsn(name)``, ``url(name)`` reach it)."""
        name = f"db{next(self._names)}"
        self.admin(f"CREATE DATABASE {name}")
        return name

    def new_schema(self, dbname: str = "postgres") -> str:
        """A new empty schema (cheaper than a database); a DSN whose search_path is it."""
        name = f"s{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE SCHEMA {name}")
        return self.dsn(dbname, options=f"-c search_path={name}")

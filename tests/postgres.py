"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl into a temporary directory, unix socket only.

Debian's postgresql package puts the binaries under /usr/lib/postgresql/<version>/bin. As root, the server
runs as the `postgres` OS user (PostgreSQL refuses to run as root), in a directory that user owns. The
server listens on no TCP port at all (listen_addresses=''), only on a socket in its own directory, so
parallel sessions never collide. If the server cannot start, the fixtures raise: PostgreSQL tests fail,
they never skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PORT = 5432  # only names the socket file (.s.PGSQL.5432) inside our private directory


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                       "run `make system-deps` (Debian package postgresql)")


class PostgresServer:
    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="netpol-drift-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.as_root = os.geteuid() == 0
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o700)
        self.user = "postgres" if self.as_root else pwd.getpwuid(os.geteuid()).pw_name
        self.durable, self.password = False, None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return proc

    def start(self, password: str | None = None, durable: bool = False) -> None:
        """initdb and start. With a password, the superuser has it and every connection must give it
        (scram-sha-256), so a test can see where a database password goes. `durable`: a commit is answered
        only once its WAL is written (what a test that halts the server needs; the shared server need not)."""
        self.durable, self.password = durable, password
        auth = ["-A", "trust"]
        if password is not None:
            pwfile = self.root / "pw"
            pwfile.write_text(password + "\n")
            if self.as_root:
                pw = pwd.getpwnam("postgres")
                os.chown(pwfile, pw.pw_uid, pw.pw_gid)
            auth = ["-A", "scram-sha-256", f"--pwfile={pwfile}"]
        self._run("initdb", "-D", str(self.data), *auth, "-U", self.user, "-E", "UTF8", "--no-sync")
        if password is not None:
            (self.root / "pw").unlink()
        self.resume()

    def halt(self) -> None:
        """The server gone at once (no shutdown checkpoint, as a crash or a node loss), its data kept."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        """Starts (again) on the same data directory and socket."""
        commit = "on" if self.durable else "off"
        options = (f"-k {self.socket_dir} -p {PORT} -c listen_addresses='' -c fsync=off "
                   f"-c synchronous_commit={commit} -c full_page_writes=off -c max_connections=200")
        try:
            self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"),
                      "-w", "-t", "60", "start")
        except RuntimeError as e:
            log = (self.root / "server.log")
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{e}\n{tail}") from e

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.socket_dir}&port={PORT}"

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(host=str(self.socket_dir), port=PORT, user=self.user, dbname="postgres",
                             autocommit=True, password=self.password) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def private_postgres(*, password: str | None = None, durable: bool = True) -> Iterator[PostgresServer]:
    """A server of one test's own: one it may halt (the shared session server must never be), or one that
    demands a password. Removed at the end."""
    server = PostgresServer()
    try:
        server.start(password=password, durable=durable)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (no schema) on each backend: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_server").create_database()

"""A throwaway PostgreSQL cluster with Supabase's roles and the repository's migrations applied."""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MIGRATIONS_DIR = REPO_ROOT / "supabase" / "migrations"
MIN_SERVER_VERSION = 14
OS_SERVER_USER = "postgres"
SUPERUSER = "postgres"
DATABASE = "postgres"

# Mirrors what a fresh Supabase project has before any user migration runs.
SUPABASE_BOOTSTRAP_SQL = """
CREATE ROLE anon NOLOGIN NOINHERIT;
CREATE ROLE authenticated NOLOGIN NOINHERIT;
CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
CREATE ROLE authenticator LOGIN NOINHERIT;
GRANT anon, authenticated, service_role TO authenticator;
ALTER ROLE anon SET statement_timeout = '3s';
ALTER ROLE authenticated SET statement_timeout = '8s';
ALTER ROLE authenticator SET statement_timeout = '8s';

GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public
  GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public
  GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public
  GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;

CREATE SCHEMA IF NOT EXISTS extensions;
GRANT USAGE ON SCHEMA extensions TO anon, authenticated, service_role;

CREATE SCHEMA auth;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb
$$;
CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
  SELECT auth.jwt() ->> 'role'
$$;
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT nullif(auth.jwt() ->> 'sub', '')::uuid
$$;

CREATE SCHEMA supabase_migrations;
CREATE TABLE supabase_migrations.schema_migrations (
  version text PRIMARY KEY,
  name text,
  statements text[]
);
"""


class PostgresError(RuntimeError):
    """The cluster could not be created or started."""


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_major_version(bindir: Path) -> int:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else 0


def _candidate_bindirs() -> list[Path]:
    candidates: list[Path] = []
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        candidates.append(Path(out.stdout.strip()))

    def version_key(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/", path)
        return int(match.group(1)) if match else 0

    versioned = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_key, reverse=True)
    candidates.extend(Path(p) for p in versioned)
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    return candidates


def find_bindir() -> Path:
    """The first directory holding ``initdb`` and ``postgres`` of version >= 14."""
    for bindir in _candidate_bindirs():
        has_binaries = (bindir / "initdb").exists() and (bindir / "postgres").exists()
        if has_binaries and _server_major_version(bindir) >= MIN_SERVER_VERSION:
            return bindir
    raise PostgresError(f"no PostgreSQL >= {MIN_SERVER_VERSION} server binaries found (initdb, postgres)")


def migration_files(migrations_dir: Path | None) -> list[Path]:
    if migrations_dir is None or not migrations_dir.is_dir():
        return []
    return sorted(migrations_dir.glob("*.sql"), key=lambda p: p.name)


def migration_version(path: Path) -> str:
    return path.name.split("_", 1)[0]


def apply_migration(conn: psycopg.Connection[Any], path: Path) -> None:
    """Run one migration file in a transaction and record it in ``supabase_migrations``."""
    text = path.read_text()
    try:
        with conn.transaction():
            conn.execute(text.encode())
            conn.execute(
                "INSERT INTO supabase_migrations.schema_migrations (version, name, statements)"
                " VALUES (%s, %s, %s) ON CONFLICT (version) DO NOTHING",
                (migration_version(path), path.stem, [text]),
            )
    except psycopg.Error as exc:
        raise PostgresError(f"migration {path.name} failed: {exc}") from exc


class PostgresCluster:
    """A PostgreSQL server in a temp dir on a free loopback port, stopped and removed by ``stop()``."""

    def __init__(
        self,
        migrations_dir: Path | None = DEFAULT_MIGRATIONS_DIR,
        *,
        port: int | None = None,
        max_connections: int = 200,
    ) -> None:
        self.migrations_dir = migrations_dir
        self.port = port or free_loopback_port()
        self.max_connections = max_connections
        self.bindir = find_bindir()
        self.applied_migrations: list[str] = []
        self._base_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._as_root = os.geteuid() == 0

    # -- paths --------------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        if self._base_dir is None:
            raise PostgresError("cluster not created; call start()")
        return self._base_dir

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "socket"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def dsn(self, user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def superuser_dsn(self) -> str:
        return self.dsn(SUPERUSER)

    def connect(self, user: str = SUPERUSER, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn(user), autocommit=autocommit, connect_timeout=5)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> PostgresCluster:
        """Create (first time only), start and bootstrap the cluster; idempotent while running."""
        if self.running:
            return self
        fresh = self._base_dir is None
        if fresh:
            self._create_dirs()
            self._initdb()
            atexit.register(self.stop)
        self._launch()
        if fresh:
            self._bootstrap()
        return self

    def restart(self) -> None:
        """Stop and start again on the same data dir and port (simulates a database restart)."""
        self.halt()
        self._launch()

    def stop(self) -> None:
        """Stop the server and remove every temp dir; safe to call twice."""
        self.halt()
        if self._base_dir is not None:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------------
    def _run_as_server_user(self) -> dict[str, Any]:
        if not self._as_root:
            return {}
        return {"user": OS_SERVER_USER, "group": OS_SERVER_USER, "extra_groups": []}

    def _create_dirs(self) -> None:
        self._base_dir = Path(tempfile.mkdtemp(prefix="devstack-pg-"))
        self.socket_dir.mkdir()
        if self._as_root:
            for path in (self._base_dir, self.socket_dir):
                shutil.chown(path, OS_SERVER_USER, OS_SERVER_USER)

    def _initdb(self) -> None:
        cmd = [
            str(self.bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        result = subprocess.run(
            cmd, capture_output=True, text=True, check=False, **self._run_as_server_user()
        )
        if result.returncode != 0:
            raise PostgresError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")

    def _server_command(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": str(self.max_connections),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "timezone": "UTC",
            "log_timezone": "UTC",
        }
        cmd = [str(self.bindir / "postgres"), "-D", str(self.data_dir)]
        for name, value in settings.items():
            cmd += ["-c", f"{name}={value}"]
        return cmd

    def _launch(self) -> None:
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                self._server_command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **self._run_as_server_user(),
            )
        finally:
            log.close()
        self._wait_until_ready()

    def _wait_until_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise PostgresError(f"postgres exited early:\n{self._log_tail()}")
            try:
                with psycopg.connect(self.superuser_dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                time.sleep(0.05)
        raise PostgresError(f"postgres did not accept connections within {timeout}s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""

    def halt(self) -> None:
        """Stop the server but keep the data dir: ``start()`` brings it back (simulates an outage)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect clients, checkpoint, exit
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _bootstrap(self) -> None:
        with self.connect() as conn:
            conn.execute(SUPABASE_BOOTSTRAP_SQL)
            for path in migration_files(self.migrations_dir):
                apply_migration(conn, path)
                self.applied_migrations.append(path.name)
            conn.execute("NOTIFY pgrst, 'reload schema'")

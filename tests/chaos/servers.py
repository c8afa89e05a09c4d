"""The chaos suite's own database servers: a PostgreSQL cluster and a MariaDB instance on their own ports
and data directories under ``CHAOS_ROOT``, never the machine's main servers (other test runs use those).

Both are set up idempotently (``ensure()``), can be crashed and restarted (``restart()``), and are stopped
with ``stop()``. Server commands run as the ``postgres`` / ``mysql`` system users (the tests run as root).
Workers connect as the unprivileged role ``chaos`` (so connection limits and ``pg_terminate_backend`` /
``KILL CONNECTION`` by user hit them), the suite itself as the superuser.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

CHAOS_ROOT = Path(os.environ.get("CHAOS_ROOT", "/tmp/sa-chaos"))  # noqa: S108 - the postgres user must reach it
DATABASE = "sa_chaos"
ROLE = "chaos"


def _run(*cmd: str, user: str | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    if user and os.geteuid() == 0:
        cmd = ("runuser", "-u", user, "--", *cmd)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


class Postgres:
    vendor = "postgres"

    def __init__(self, port: int = int(os.environ.get("CHAOS_PG_PORT", "5440"))):
        self.port = port
        self.root = CHAOS_ROOT / "postgres"
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.log = self.root / "server.log"
        self.bin = self._bindir()

    @staticmethod
    def _bindir() -> Path:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
        if not versions:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        return versions[-1].parent

    def worker_url(self) -> str:
        return f"postgres://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def admin_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _pg(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return _run(str(self.bin / args[0]), *args[1:], user="postgres", **kwargs)

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            shutil.rmtree(self.data, ignore_errors=True)
            self._pg("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "-E", "UTF8")
        self.sock.mkdir(exist_ok=True)
        shutil.chown(self.sock, "postgres", "postgres")
        self.start()
        self.sql(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN "
            f"CREATE ROLE {ROLE} LOGIN; END IF; END $$",
            database="postgres",
        )
        if self.sql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'", database="postgres") != "1":
            self.sql(f"CREATE DATABASE {DATABASE} OWNER {ROLE}", database="postgres")
        self.sql(f"ALTER DATABASE {DATABASE} CONNECTION LIMIT -1", database="postgres")

    def running(self) -> bool:
        return self._pg("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def start(self) -> None:
        if self.running():
            return
        options = (
            f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=64MB"
        )
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        _wait(lambda: self.sql("SELECT 1", database="postgres", check=False) == "1", 60, "PostgreSQL to accept")

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def crash(self) -> None:
        """Stop like a crash: ``immediate`` mode, so the next start replays the WAL."""
        self.stop("immediate")

    def sql(self, statement: str, database: str = DATABASE, check: bool = True) -> str:
        result = self._pg(
            "psql",
            "-h",
            str(self.sock),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-XAtqc",
            statement,
            check=check,
            timeout=60,
        )
        return result.stdout.strip()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class MariaDB:
    vendor = "mysql"

    def __init__(self, port: int = int(os.environ.get("CHAOS_MARIADB_PORT", "3310"))):
        self.port = port
        self.root = CHAOS_ROOT / "mariadb"
        self.data = self.root / "data"
        self.sock = self.root / "mysqld.sock"
        self.pidfile = self.root / "mysqld.pid"
        self.log = self.root / "server.log"
        self.proc: subprocess.Popen | None = None

    def worker_url(self) -> str:
        return f"mysql://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def admin_url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{DATABASE}"

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root, "mysql", "mysql")
        if not (self.data / "mysql").exists():
            shutil.rmtree(self.data, ignore_errors=True)
            _run(
                "mariadb-install-db",
                f"--datadir={self.data}",
                "--user=mysql",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
                "--skip-name-resolve",
            )
        self.start()
        self.sql(f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4")
        self.sql("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'")
        self.sql("GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
        for host in ("127.0.0.1", "localhost"):
            self.sql(f"CREATE USER IF NOT EXISTS '{ROLE}'@'{host}'")
            self.sql(f"GRANT ALL ON {DATABASE}.* TO '{ROLE}'@'{host}'")
            self.sql(f"GRANT ALL ON `test_{DATABASE}%`.* TO '{ROLE}'@'{host}'")

    def pid(self) -> int | None:
        """The server's pid while it runs (a killed server its parent has not reaped yet is a zombie: gone)."""
        try:
            pid = int(self.pidfile.read_text().strip())
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return None if stat.rsplit(")", 1)[-1].split()[0] == "Z" else pid

    def running(self) -> bool:
        return self.pid() is not None and _port_open(self.port)

    def start(self) -> None:
        if self.running():
            return
        log = open(self.log, "ab")  # noqa: SIM115 - the server keeps it
        self.proc = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={self.data}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.sock}",
                f"--pid-file={self.pidfile}",
                "--user=mysql",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--max-connections=300",
                "--skip-log-bin",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        _wait(lambda: self.sql("SELECT 1", check=False) == "1", 90, f"MariaDB on port {self.port} (log {self.log})")

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        _wait(lambda: self.pid() is None and not _port_open(self.port), 60, "MariaDB to stop")
        if self.proc:
            self.proc.wait(10)

    def crash(self) -> None:
        """``kill -9`` the server: the next start runs InnoDB crash recovery."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            _wait(lambda: not _port_open(self.port), 30, "MariaDB to die")
            if self.proc:
                self.proc.wait(10)
            else:
                _wait(lambda: self.pid() is None, 30, "MariaDB's pid to go")
        self.pidfile.unlink(missing_ok=True)

    def sql(self, statement: str, check: bool = True) -> str:
        result = _run(
            "mariadb", f"--socket={self.sock}", "-uroot", "-N", "-B", "-e", statement, check=check, timeout=60
        )
        return result.stdout.strip()

    def destroy(self) -> None:
        self.crash()
        shutil.rmtree(self.root, ignore_errors=True)


def server(vendor: str) -> Postgres | MariaDB:
    return {"postgres": Postgres, "mysql": MariaDB, "mariadb": MariaDB}[vendor]()

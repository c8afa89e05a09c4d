"""A PgBouncer of the test's own, in transaction mode, in front of the test's PostgreSQL server.

Debian's ``pgbouncer`` (installed by scripts/bootstrap.sh; 1.18, which keeps no prepared statements), on a
free port, with trust authentication and a wildcard database entry, so any database of that server is
reachable through it under its own name. PgBouncer refuses to run as root: as root it runs as the
``postgres`` system user, its configuration, pid file and log in a temporary directory that user owns.
Stopped (SIGTERM to the pid it wrote, then its process reaped) by ``stop``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
RUN_AS = "postgres"  # the system user of Debian's postgresql packages

CONFIG = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/userlist.txt
pool_mode = transaction
max_client_conn = 400
default_pool_size = {pool_size}
ignore_startup_parameters = extra_float_digits,options
server_reset_query =
logfile = {directory}/pgbouncer.log
pidfile = {directory}/pgbouncer.pid
"""


def available() -> bool:
    return Path(PGBOUNCER).exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgBouncer:
    """``PgBouncer(host, port, user).start()``; ``url(name)`` is a DATABASE_URL through it."""

    def __init__(self, host: str, port: int, user: str, pool_size: int = 20):
        self.host, self.server_port, self.user, self.pool_size = host, port, user, pool_size
        self.directory = Path(tempfile.mkdtemp(prefix="sa-pgbouncer-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.directory / "pgbouncer.log"

    def url(self, name: str) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{name}"

    def start(self, timeout: float = 30.0) -> PgBouncer:
        for _attempt in range(5):  # another process may take the free port before pgbouncer binds it
            self.port = free_port()
            self._write_config()
            self.process = subprocess.Popen(  # noqa: S603 - our own command line
                self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
            )
            if self._wait_ready(timeout):
                return self
            self.stop(remove=False)
        raise RuntimeError(f"pgbouncer did not start; its log:\n{self.log_text()}")

    def stop(self, remove: bool = True) -> None:
        pid = self._pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)  # pgbouncer's own pid: runuser only waits for it
            except ProcessLookupError:
                pass
        if self.process is not None:
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
            self.process = None
        if pid is not None:
            self._wait_gone(pid)
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"

    def _command(self) -> list[str]:
        command = [PGBOUNCER, str(self.directory / "pgbouncer.ini")]
        if os.geteuid() == 0:
            return ["runuser", "-u", RUN_AS, "--", *command]
        return command

    def _write_config(self) -> None:
        for name in ("pgbouncer.pid", "pgbouncer.log"):
            (self.directory / name).unlink(missing_ok=True)
        (self.directory / "userlist.txt").write_text(f'"{self.user}" ""\n')
        (self.directory / "pgbouncer.ini").write_text(
            CONFIG.format(
                host=self.host,
                port=self.server_port,
                listen_port=self.port,
                directory=self.directory,
                pool_size=self.pool_size,
            )
        )
        if os.geteuid() == 0:
            shutil.chown(self.directory, RUN_AS, RUN_AS)
            for path in self.directory.iterdir():
                shutil.chown(path, RUN_AS, RUN_AS)

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self._pid() is not None
            except OSError:
                time.sleep(0.05)
        return False

    def _pid(self) -> int | None:
        try:
            return int((self.directory / "pgbouncer.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _wait_gone(pid: int) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

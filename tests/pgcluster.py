"""A throwaway PostgreSQL server of our own, to break on purpose (fault tests, bench/faults).

The machine's PostgreSQL is shared: a fault test must never stop or pause it. This starts
another server from the same binaries (``/usr/lib/postgresql/<version>/bin``): ``initdb``
into a temporary directory, ``pg_ctl start`` on a free port, trust authentication, bound to
127.0.0.1 only. Run as root, the server runs as the ``postgres`` OS user (PostgreSQL refuses
to run as root). ``stop()`` is an immediate shutdown (a crash, as far as the server knows);
``pause()`` sends SIGSTOP to the postmaster and every backend (sockets stay open, nothing
answers); ``resume()`` sends SIGCONT.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("initdb", "pg_ctl", "postgres")


def find_binaries() -> Path | None:
    """The newest PostgreSQL bin directory with initdb, pg_ctl and postgres, if any."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                        key=lambda path: _version(path.parent.name), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if all((folder / name).exists() for name in REQUIRED):
            return folder
    return None


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    bin_dir: Path
    root: Path  # the temporary directory: data/, the socket and the server's log
    port: int
    user: str | None  # the OS user the server runs as (None: this process's user)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        return subprocess.run([*prefix, *command], capture_output=True, text=True,
                              timeout=timeout, check=True, cwd=self.root)

    def init(self) -> None:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                  "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C")

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.root} -c max_connections=50")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l",
                  str(self.log_path), "-o", options, "-w", "-t", "30", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w",
                  "-t", "30", "stop")

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def pids(self) -> list[int]:
        """The postmaster, then every process it started (backends, checkpointer, ...)."""
        postmaster = self.postmaster_pid()
        if postmaster is None:
            return []
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:
                children.append(int(entry.name))
        return [postmaster, *children]

    def pause(self) -> list[int]:
        """SIGSTOP the postmaster first (it starts no backend after that), then the rest."""
        postmaster = self.postmaster_pid()
        if postmaster is not None:
            os.kill(postmaster, signal.SIGSTOP)
        paused = self.pids()
        for pid in paused[1:]:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        return paused

    def resume(self) -> None:
        for pid in reversed(self.pids()):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def destroy(self) -> None:
        self.resume()  # a stopped server would ignore pg_ctl stop
        with suppress(subprocess.SubprocessError, OSError):
            if self.postmaster_pid() is not None:
                self.stop("immediate")
        pid = self.postmaster_pid()
        if pid is not None:  # last resort
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def temporary_cluster(bin_dir: Path | None = None) -> Iterator[Cluster]:
    """A started PostgreSQL server in a temporary directory; destroyed afterwards."""
    bin_dir = bin_dir or find_binaries()
    if bin_dir is None:
        raise FileNotFoundError("no PostgreSQL binaries (initdb, pg_ctl, postgres) found")
    root = Path(tempfile.mkdtemp(prefix="clinic_pg_"))
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = "postgres"
        account = pwd.getpwnam(user)
        os.chown(root, account.pw_uid, account.pw_gid)
    root.chmod(0o700)
    cluster = Cluster(bin_dir=bin_dir, root=root, port=free_port(), user=user)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()

"""The service's own processes for tests: gunicorn and ``python -m service.scheduler`` as
production runs them (the project's gunicorn.conf.py, environment variables only), and a
Redis of the test's own on a spare port (never the shared one)."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Process:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return self.process.returncode


def call(port: int, method: str, path: str, *, headers: dict[str, str] | None = None,
         body: bytes | None = None, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body,
                           headers={"Connection": "close", **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    except OSError:
        return 0, {}, b""
    finally:
        connection.close()


def _spawn(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> Process:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return Process(name=name, process=process, log_path=log_path)


@contextmanager
def gunicorn(name: str, env: dict[str, str], log_dir: Path, *, workers: int = 1
             ) -> Iterator[Process]:
    port = free_port()
    server = _spawn(name, [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py",
                           "service.wsgi:app"],
                    {**env, "HOST": "127.0.0.1", "PORT": str(port),
                     "WEB_CONCURRENCY": str(workers)}, log_dir)
    server.port = port
    try:
        deadline = time.monotonic() + 60
        while call(port, "GET", "/healthz", timeout=2)[0] != 200:
            if server.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn {name} did not start:\n{server.log()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


@contextmanager
def scheduler(name: str, env: dict[str, str], log_dir: Path) -> Iterator[Process]:
    process = _spawn(name, [sys.executable, "-m", "service.scheduler"], env, log_dir)
    try:
        deadline = time.monotonic() + 60
        while "scheduler started" not in process.log():
            if process.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"scheduler {name} did not start:\n{process.log()[-3000:]}")
            time.sleep(0.1)
        yield process
    finally:
        process.stop()


@contextmanager
def redis_server(log_dir: Path) -> Iterator[tuple[Process, str]]:
    """A Redis of this test's own on a spare port; yields it and its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = _spawn("redis", [binary, "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(log_dir)],
                     {}, log_dir)
    process.port = port
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start:\n{process.log()}")
                time.sleep(0.05)
        yield process, f"redis://127.0.0.1:{port}/0"
    finally:
        process.stop()

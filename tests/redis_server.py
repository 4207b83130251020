"""A throwaway ``redis-server`` for tests: a free loopback port, no persistence, a temp dir.

Tests use a Redis they started here, or the one named by ``CHATGATE_TEST_REDIS_URL``; never
any other (a Redis on 6379 may belong to someone else). Each test works under its own key
prefix and deletes only its own keys.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis

URL_VARIABLE = "CHATGATE_TEST_REDIS_URL"
_START_LIMIT = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique_prefix() -> str:
    """A key prefix no other test (or person) uses."""
    return f"chatgate-test-{uuid.uuid4().hex[:12]}:"


class RedisServer:
    """One ``redis-server`` child process on 127.0.0.1, restartable on the same port."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it)")
        self.binary = binary
        self.port = port or _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="chatgate-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ]
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + _START_LIMIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1) as client:
                    client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        """Stop it for good; its data goes with it (it never saves)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Kill it at once, as a crash would."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def started_server() -> Iterator[RedisServer]:
    """A fresh server, retried on another port if the chosen one was taken meanwhile."""
    for attempt in range(3):
        server = RedisServer()
        try:
            server.start()
        except RuntimeError:
            server.cleanup()
            if attempt == 2:
                raise
            continue
        try:
            yield server
        finally:
            server.cleanup()
        return


@contextlib.contextmanager
def redis_for_tests() -> Iterator[str]:
    """The URL tests use: ``CHATGATE_TEST_REDIS_URL``, or a server started for this session."""
    given = os.environ.get(URL_VARIABLE)
    if given:
        yield given
        return
    with started_server() as server:
        yield server.url


def delete_prefix(url: str, prefix: str) -> None:
    """Delete the keys under ``prefix``, and only those."""
    with redis.Redis.from_url(url) as client:
        batch = list(client.scan_iter(match=prefix + "*", count=500))
        while batch:
            client.delete(*batch[:500])
            batch = batch[500:]

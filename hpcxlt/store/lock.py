"""The run directory's lock: one `submit`, `resume` or `cancel` at a time, also on shared file systems."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hpcxlt.store.errors import RunDirError

LOCK_FILE = ".hpcxlt.lock"


class RunLock:
    """An exclusive lock on a run directory that works on shared (NFS-like) file systems.

    The lock is a file created with O_EXCL (atomic on NFS v3+) holding its holder: host, pid, command
    and since when. While held, a thread touches it every `heartbeat_s`; a lock whose holder is a dead
    process on this host, or whose heartbeat stopped `stale_s` ago (its host crashed), is stale and
    taken over. Waiting for a live holder prints who it is once; after `wait_s` a RunDirError names it.
    Taking over a stale lock goes through a second O_EXCL file, so two waiters cannot both break it.
    """

    heartbeat_s = 15.0
    stale_s = 120.0

    def __init__(self, path: Path, command: str, *, wait_s: float = 300.0):
        self.path, self.command, self.wait_s = Path(path), command, wait_s
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(), "command": command, "since": time.time()}
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _create(self, path: Path, content: dict) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(content, handle)
        return True

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _stale(self, holder: dict | None) -> bool:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        if holder is None:  # being written right now, or a crash mid-write
            return age > self.stale_s
        if holder.get("host") == socket.gethostname():
            try:
                os.kill(int(holder["pid"]), 0)
            except ProcessLookupError:
                return True
            except PermissionError:  # alive, another user's process
                return False
            return False
        return age > self.stale_s

    def _break(self, holder: dict | None) -> None:
        breaker = self.path.with_name(self.path.name + ".break")
        try:
            if time.time() - breaker.stat().st_mtime > 60:
                breaker.unlink(missing_ok=True)  # a breaker that died while breaking
        except FileNotFoundError:
            pass
        if not self._create(breaker, self.holder):
            return
        try:
            if self._read() == holder and self._stale(holder):
                self.path.unlink(missing_ok=True)
        finally:
            breaker.unlink(missing_ok=True)

    def live_holder(self) -> dict | None:
        """Who holds the lock now (None: nobody, or a stale holder that is gone)."""
        holder = self._read()
        if holder is None or self._stale(holder):
            return None
        return holder

    @staticmethod
    def describe(holder: dict | None) -> str:
        if not holder:
            return "an unknown holder"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
        return f"`hpcxlt {holder.get('command')}` (host {holder.get('host')}, pid {holder.get('pid')}, since {since})"

    def __enter__(self) -> RunLock:
        deadline = time.time() + self.wait_s
        told = False
        while not self._create(self.path, self.holder):
            holder = self._read()
            if self._stale(holder):
                self._break(holder)
                continue
            if time.time() > deadline:
                raise RunDirError(
                    f"{self.path.parent} is locked by {self.describe(holder)}; wait for it to finish, "
                    f"or remove {self.path} if that process is gone"
                )
            if not told:
                print(f"waiting for the run directory lock held by {self.describe(holder)}", file=sys.stderr)
                told = True
            time.sleep(0.5)
        self._beat = threading.Thread(target=self._heartbeat, name="hpcxlt-lock", daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if self._read() == self.holder:
            self.path.unlink(missing_ok=True)

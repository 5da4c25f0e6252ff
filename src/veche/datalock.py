"""The data directory's lock: held by `veche serve` for as long as it runs, so that
`veche restore` can refuse to replace a database and media a running server is using."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = ".veche.lock"


class DataDirLocked(Exception):
    pass


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise DataDirLocked (it is released when the process ends, however
        it ends: an flock, not a PID file that a crash leaves behind)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise DataDirLocked(
                f"{self.path.parent} is in use by a running veche serve"
                f"{f' (pid {holder})' if holder else ''}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def held_elsewhere(self) -> bool:
        """Whether some other process holds the lock now."""
        if not self.path.exists():
            return False
        try:
            self.acquire()
        except DataDirLocked:
            return True
        self.release()
        return False

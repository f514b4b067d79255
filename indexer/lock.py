"""The gallery's writer lock: an exclusive ``fcntl.flock`` of ``<gallery>/.write.lock``.

Enrolment and removal hold it for their whole run, so two writers never
interleave their batches. Readers do not take it, except to write a rebuilt
index file when it is free.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_FILE = ".write.lock"


class LockTimeoutError(TimeoutError):
    """Another process held the gallery's write lock for longer than the timeout."""


class WriteLock:
    """Exclusive, re-entrant writer lock: ``fcntl.flock`` on ``<gallery>/.write.lock``.

    The kernel drops a flock when its holder dies, so a killed enrolment never
    leaves a stale lock. The holder writes its process id into the file so that
    a waiting process can name it.

    Args:
        folder: the gallery folder.
        timeout: seconds to wait for another holder; None waits without limit,
            0 fails at once.
    """

    def __init__(self, folder: str | os.PathLike, timeout: float | None = None):
        self.path = Path(folder) / LOCK_FILE
        self.timeout = timeout
        self._fd: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._depth > 0

    def _holder(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:
            return "another process"
        return f"process {pid}" if pid else "another process"

    def try_acquire(self) -> bool:
        """Take the lock without waiting; return whether it is now held."""
        if self._depth:
            self._depth += 1
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd, self._depth = fd, 1
        return True

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` seconds.

        Raises:
            LockTimeoutError: another process still holds the lock after ``timeout`` seconds.
        """
        if self.try_acquire():
            return
        start = time.monotonic()
        limit = "without a time limit" if self.timeout is None else f"for up to {self.timeout:g} s"
        logger.warning("waiting for the gallery write lock %s, held by %s (another enrolment or removal); "
                       "waiting %s", self.path, self._holder(), limit)
        while not self.try_acquire():
            if self.timeout is not None and time.monotonic() - start >= self.timeout:
                raise LockTimeoutError(
                    f"timed out after {self.timeout:g} s waiting for the gallery write lock {self.path}, "
                    f"held by {self._holder()}; wait for that enrolment or removal to finish, "
                    "or raise --lock-timeout")
            time.sleep(0.1)
        logger.info("acquired the gallery write lock after %.1f s", time.monotonic() - start)

    def release(self) -> None:
        if not self._depth:
            return
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            # Unlock before close; the pid stays in the file and names the last holder.
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WriteLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

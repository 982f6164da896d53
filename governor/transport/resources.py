"""What the daemon's transport asks of its process: file descriptors, a memory ceiling, freed memory back.

libzmq aborts the whole process when an ipc listener's ``accept`` fails with EMFILE (ipc_listener.cpp
asserts on it), so the descriptor limit decides whether a flood of connections stops the daemon with
the clocks pinned. systemd's default soft limit is 1024 while the hard limit is far higher: the soft
one is raised at start, and connections are then bounded well below it (:mod:`governor.transport.guard`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
from pathlib import Path

__all__ = ["FD_CAP", "RESERVE_FDS", "RssProbe", "give_back_memory", "memory_limit_bytes", "open_fds",
           "raise_fd_limit"]

log = logging.getLogger(__name__)

FD_CAP = 65536  # never ask for more descriptors than this, whatever the hard limit allows
RESERVE_FDS = 64  # descriptors never handed to connections: sysfs reads and writes, the restore, logs


def raise_fd_limit(cap: int = FD_CAP) -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard one (at most ``cap``, never lower); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, want, exc)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return cap if soft == resource.RLIM_INFINITY else soft


def open_fds() -> int:
    """How many descriptors this process holds now (0 where /proc is missing)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def memory_limit_bytes() -> int:
    """The memory this process may use: its cgroup's limit (systemd's MemoryMax=) if any, else physical RAM."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limits = [physical]
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":  # cgroup v2
                limits.append(_read_limit(Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.max"))
            elif "memory" in controllers.split(","):  # cgroup v1
                limits.append(_read_limit(Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.limit_in_bytes"))
    return min(limit for limit in limits if limit > 0)


def _read_limit(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return 0
    return 0 if text in ("max", "") else int(text)


class RssProbe:
    """This process's resident memory (bytes), read from a /proc/self/statm descriptor held open, so a
    reading costs one pread and needs no new descriptor even when a flood has taken them all."""

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)

    def rss_bytes(self) -> int:
        return int(os.pread(self._fd, 128, 0).split()[1]) * self._page

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _malloc_trim() -> object | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; musl and others have none
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def give_back_memory() -> None:
    """Return freed heap pages to the kernel. glibc keeps what a dropped 100 MiB message occupied (its
    mmap threshold adapts upwards), which left the daemon's RSS ~190 MiB higher for good."""
    if _TRIM is not None:
        _TRIM(0)  # type: ignore[operator]

"""One trainer per run folder: `<run>/train.lock`, held by the process that trains it.

The CLI (`python -m core.train`, which is also the web runner's worker) takes it before it writes
anything to the folder and removes it when it exits, whatever the way (done, error, SIGTERM stop,
Ctrl-C). The file names its holder:

    {"pid": 4242, "start_ticks": 123456, "boot_id": "6f1c...", "time": 1717000000.0}

A lock whose holder is gone is stale and is taken over: the machine booted since (another boot
id), no process has the pid, the process with the pid started at another time (the pid was
recycled) or is a zombie. (boot id, pid, start time) names one process for the life of a machine;
a command-line check ("does it run core.train?") would also take a recycled pid given to another
trainer for the holder, and would miss in-process trainers (tests, notebooks). Off Linux (no
/proc) only "does the pid exist" is known. A kill -9 leaves the file behind: the next trainer
finds it stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import UserInputError

LOCK_FILE = "train.lock"
PROC = Path("/proc")
START_TICKS_FIELD = 19  # starttime, field 22 of /proc/<pid>/stat, counted from the state (field 3)


# ------------------------------------------------------------------------------------- processes
def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat from the state on, or None when there is no such process.
    The name before them may hold spaces and ')': split after the last ')'."""
    try:
        return (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    """A process has this pid and is not a zombie (exited, not reaped yet)."""
    if pid <= 0:  # kill(0) and kill(-n) address process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    if not PROC.is_dir():
        return True
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def _start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return int(stat[START_TICKS_FIELD]) if stat else None


def _boot_id() -> str | None:
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


# ------------------------------------------------------------------------------------ the holder
@dataclass(frozen=True)
class LockOwner:
    pid: int
    start_ticks: int | None  # when the process started, in clock ticks since boot; None off Linux
    boot_id: str | None
    time: float  # unix time the lock was taken, for messages

    @classmethod
    def of(cls, pid: int) -> LockOwner:
        """The running process `pid` as a lock taken now would name it."""
        return cls(pid, _start_ticks(pid), _boot_id(), round(time.time(), 3))

    def alive(self) -> bool:
        if self.boot_id is not None and self.boot_id != _boot_id():
            return False
        if not pid_alive(self.pid):
            return False
        return self.start_ticks is None or self.start_ticks == _start_ticks(self.pid)


def read_owner(run_dir: str | Path) -> LockOwner | None:
    """Who the lock file names, or None without a readable one (absent, or debris of a crash mid-write)."""
    try:
        data = json.loads((Path(run_dir) / LOCK_FILE).read_text(encoding="utf-8"))
        return LockOwner(
            pid=int(data["pid"]),
            start_ticks=data.get("start_ticks"),
            boot_id=data.get("boot_id"),
            time=float(data.get("time", 0.0)),
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def lock_holder(run_dir: str | Path) -> LockOwner | None:
    """The live process holding the folder's lock, or None when it is free or stale."""
    owner = read_owner(run_dir)
    return owner if owner is not None and owner.alive() else None


class LockHeld(UserInputError):
    """A second trainer on a folder; `owner` is the one training it."""

    def __init__(self, run_dir: Path, owner: LockOwner):
        self.owner = owner
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.time))
        super().__init__(
            f"Run folder {run_dir} is being trained by another process (pid {owner.pid}, since "
            f"{since}): wait for it to finish or stop it, or choose another output_dir."
        )


# -------------------------------------------------------------------------------------- the lock
@contextlib.contextmanager
def _serialised(run_dir: Path) -> Iterator[None]:
    """Only one process at a time judges and replaces a lock: two that both found a stale lock
    would otherwise both remove it, the second removing the first one's fresh lock. flock on the
    folder itself leaves no file behind and is released by the kernel if we die."""
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a file system without flock: O_EXCL below still guards a free folder
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


class RunLock:
    """`with RunLock(run_dir):` holds the folder's lock for the block; raises LockHeld if a live
    process holds it. A folder that taking the lock created is removed again if it is left empty,
    so a trainer refused before it wrote anything leaves no trace."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.owner: LockOwner | None = None
        self._made_folder = False

    def __enter__(self) -> RunLock:
        self._made_folder = not self.run_dir.is_dir()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            with _serialised(self.run_dir):
                self.owner = self._take()
        except BaseException:
            self._remove_made_folder()
            raise
        return self

    def _take(self) -> LockOwner:
        path = self.run_dir / LOCK_FILE
        holder = read_owner(self.run_dir)
        if holder is not None and holder.alive():
            raise LockHeld(self.run_dir, holder)
        path.unlink(missing_ok=True)  # stale (or unreadable debris): taken over
        owner = LockOwner.of(os.getpid())
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(owner)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return owner

    def __exit__(self, *exc) -> None:
        # Removed only while it still names us: a lock someone took over is theirs.
        if self.owner is not None and read_owner(self.run_dir) == self.owner:
            (self.run_dir / LOCK_FILE).unlink(missing_ok=True)
        self.owner = None
        self._remove_made_folder()

    def _remove_made_folder(self) -> None:
        if self._made_folder:
            with contextlib.suppress(OSError):  # not empty: the run was prepared, keep it
                self.run_dir.rmdir()

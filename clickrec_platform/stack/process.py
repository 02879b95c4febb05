"""Start, watch and stop one local service process: pid file, log file, readiness wait.

Every service of the local stack goes through this, so they all behave the same way: starting one
that already runs is a no-op, a port held by something else is refused before anything starts, a
failed start reports the tail of the service's log, and stopping touches only the process (group)
whose pid this module recorded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def set_autogroup_nice(pid: int, nice: int) -> bool:
    """Give the autogroup of `pid`'s session the niceness `nice`; False where the kernel has none.

    With autogroups on (`kernel.sched_autogroup_enabled`, Debian's default), the scheduler first shares
    the CPU equally between sessions, then between the threads of each by their niceness. Every process
    the stack starts leads a session of its own (`start_new_session`), so a stream job at `nice -n 10`
    still got a whole share beside the API's session: its JVM's threads ran at 10 only against each
    other. The autogroup's own niceness is what weighs sessions against each other (sched(7)); every
    process of the session, a JVM or a run worker, shares it. Raising it needs no privilege."""
    path = Path(f"/proc/{pid}/autogroup")
    try:
        path.write_text(f"{nice}\n")
    except OSError:  # no autogroup support (or the process is gone): the threads' own niceness remains
        return False
    return True


class ServiceError(RuntimeError):
    """A service could not be started or stopped; the message says why and shows its log."""


def installed(command: str, missing: str) -> str:
    """Where ``command`` is on the PATH; else a :class:`ServiceError` with ``missing`` (how to install it)."""
    found = shutil.which(command)
    if found is None:
        raise ServiceError(missing)
    return found


def log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log written)"
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 16_384))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; it only waits to be reaped by its parent.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(") ")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.5,
               abort: Callable[[], bool] | None = None) -> bool:
    """Poll ``check`` until it is true (True), ``abort`` is true or the time is up (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - a service that is still starting may fail checks in any way
            pass
        if abort is not None and abort():
            return False
        time.sleep(interval_s)
    return False


@dataclass
class ManagedProcess:
    """One long-running process started in its own session, tracked by a pid file."""

    name: str
    # The command; a callable is built only when starting (e.g. a classpath that needs resolved jars).
    argv: Sequence[str] | Callable[[], Sequence[str]]
    state_dir: Path
    ready: Callable[[], bool]
    ports: Sequence[tuple[str, int]] = ()
    # Built only when starting, so that finding or stopping a process never needs its secrets.
    env: Callable[[], Mapping[str, str]] = dict
    cwd: Path | None = None
    # A word that must appear in /proc/<pid>/cmdline, so a recycled pid is never taken for ours.
    cmdline_marker: str = ""
    # PostgreSQL treats SIGTERM as "wait for clients to leave"; it wants SIGINT for a prompt stop.
    stop_signal: signal.Signals = signal.SIGTERM
    settle_timeout_s: float = 30.0  # how long a failed start's process gets to stop before SIGKILL
    # Scheduling priority (`nice`): batch work (the stream job, Dagster's runs) runs above 0, so that the
    # interactive services (the API, Postgres) get the CPU first; children inherit it (a Spark JVM, a run).
    # Its session's autogroup gets the same niceness (see `set_autogroup_nice`): without that, nice only
    # orders threads within the session.
    nice: int = 0
    # The stop signal to the leader alone, which stops its children itself (a PySpark driver stops its JVM: a
    # SIGTERM to the JVM too would shut Spark down under the queries the driver is stopping); whatever of the
    # group outlives the leader is killed.
    signal_leader_only: bool = False

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not pid_alive(pid):
            return None
        if self.cmdline_marker:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                return None
            if self.cmdline_marker.encode() not in cmdline:
                return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout_s: float) -> bool:
        """Start unless already running; wait until ready. True if this call started it."""
        if self.is_running():
            if not wait_until(self.ready, timeout_s, abort=lambda: not self.is_running()):
                raise ServiceError(self._failure("is running but not ready"))
            return False
        for host, port in self.ports:
            if port_in_use(host, port):
                raise ServiceError(
                    f"{self.name}: port {host}:{port} is already in use by another process. Stop it, "
                    f"or choose another port in the settings (see README, Configuration)."
                )
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n=== clickrec: starting {self.name} at {time.strftime('%F %T')}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.cwd, env={**os.environ, **self.env()}, start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        if self.nice:
            set_autogroup_nice(proc.pid, self.nice)
        if wait_until(self.ready, timeout_s, abort=lambda: proc.poll() is not None):
            return True
        reason = (f"exited with code {proc.returncode}" if proc.poll() is not None
                  else f"was not ready within {timeout_s:.0f}s")
        # Stop what this call launched by its own handle: no pid-file lookup can miss it.
        self._stop_group(proc.pid, self.settle_timeout_s)
        proc.poll()
        raise ServiceError(self._failure(reason))

    def arguments(self) -> list[str]:
        """The argv (computed now when it is given as a function), without the niceness."""
        return list(self.argv() if callable(self.argv) else self.argv)

    def command(self) -> list[str]:
        """The argv as started: under `nice -n N` for a positive niceness (exec'd, so the pid is the
        command's own, and every process it starts inherits the priority)."""
        argv = self.arguments()
        return ["nice", "-n", str(self.nice), *argv] if self.nice else argv

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the process group this module started. True if something was stopped."""
        pid = self.pid()
        if pid is not None:
            self._stop_group(pid, timeout_s)
        self.pid_file.unlink(missing_ok=True)
        return pid is not None

    def _stop_group(self, pid: int, timeout_s: float) -> None:
        for sig, wait_s in ((self.stop_signal, timeout_s), (signal.SIGKILL, 10.0)):
            try:
                if self.signal_leader_only and sig is self.stop_signal:
                    os.kill(pid, sig)
                else:
                    os.killpg(pid, sig)
            except ProcessLookupError:
                break
            if wait_until(lambda: not pid_alive(pid), wait_s, interval_s=0.2):
                break
        if self.signal_leader_only:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # what the leader left behind, if anything
                wait_until(lambda: not _group_alive(pid), 10.0, interval_s=0.1)
        self.pid_file.unlink(missing_ok=True)

    def _failure(self, reason: str) -> str:
        return (f"{self.name} {reason}. Last lines of {self.log_file}:\n"
                f"{log_tail(self.log_file)}")

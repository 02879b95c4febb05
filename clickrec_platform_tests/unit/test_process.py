"""The process supervisor, with real child processes (a tiny HTTP server) and no services."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from clickrec_platform.stack.process import ManagedProcess, ServiceError, pid_alive
from clickrec_platform_tests.support import free_port


def http_server(tmp_path, port: int, argv: list[str] | None = None) -> ManagedProcess:
    def ready() -> bool:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200

    return ManagedProcess(
        name="web", state_dir=tmp_path, ready=ready, ports=[("127.0.0.1", port)],
        argv=argv or [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path, cmdline_marker="http.server",
    )


def test_start_is_idempotent_and_stop_ends_the_process(tmp_path):
    server = http_server(tmp_path, free_port())
    assert server.start(timeout_s=20) is True
    pid = server.pid()
    assert pid and pid_alive(pid)
    assert server.start(timeout_s=20) is False  # already running: nothing new started
    assert server.pid() == pid

    assert server.stop() is True
    assert not pid_alive(pid)
    assert server.pid() is None and not server.pid_file.exists()
    assert server.stop() is False


def test_occupied_port_is_refused_before_starting(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ServiceError, match=f"port 127.0.0.1:{port} is already in use"):
            http_server(tmp_path, port).start(timeout_s=5)
    assert not (tmp_path / "run" / "web.pid").exists()


def test_a_crashing_service_reports_its_exit_and_log_tail(tmp_path):
    crash = [sys.executable, "-c", "import sys; print('boom: bad config'); sys.exit(3)"]
    with pytest.raises(ServiceError) as failure:
        http_server(tmp_path, free_port(), argv=crash).start(timeout_s=20)
    assert "exited with code 3" in str(failure.value)
    assert "boom: bad config" in str(failure.value)


def _running_with(token: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if token.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return [pid for pid in pids if pid_alive(pid)]


def test_a_service_that_never_gets_ready_is_stopped_after_the_timeout(tmp_path):
    token = f"never-ready-{uuid.uuid4().hex}"
    sleeper = [sys.executable, "-c", f"import time; time.sleep(60)  # {token}"]
    process = http_server(tmp_path, free_port(), argv=sleeper)  # its marker is not in this argv
    with pytest.raises(ServiceError, match="was not ready within 2s"):
        process.start(timeout_s=2)
    assert _running_with(token) == []  # the process this start launched is gone, not orphaned
    assert not process.pid_file.exists()


def test_a_recycled_pid_is_not_taken_for_ours(tmp_path):
    server = http_server(tmp_path, free_port())
    server.pid_file.parent.mkdir(parents=True)
    server.pid_file.write_text("1")  # pid 1 is alive, but it is not our http.server
    assert server.pid() is None
    assert server.stop() is False


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2].split()[16])


def test_a_batch_process_and_what_it_starts_run_at_its_niceness(tmp_path):
    """`nice` is exec'd (the pid file holds the command's own pid) and inherited: a Spark job's JVM, a Dagster
    daemon's run workers run at the priority the stack gave the process that started them."""
    marker = f"batch-{uuid.uuid4().hex[:8]}"
    ready_file = tmp_path / "child.pid"
    script = f"import subprocess, sys, time; p = subprocess.Popen(['sleep', '60']); " \
             f"open({str(ready_file)!r}, 'w').write(str(p.pid)); time.sleep(60)  # {marker}"
    batch = ManagedProcess(name="batch", argv=[sys.executable, "-c", script], state_dir=tmp_path,
                           ready=ready_file.exists, cmdline_marker=marker, nice=7)
    base = os.nice(0)
    try:
        assert batch.start(timeout_s=20)
        pid = batch.pid()
        assert pid is not None and "nice" not in Path(f"/proc/{pid}/cmdline").read_text()
        child = int(ready_file.read_text())
        assert _niceness(pid) == _niceness(child) == min(19, base + 7)
        # The session's autogroup too (where the kernel has them), which is what weighs it against the API's.
        autogroup = Path(f"/proc/{pid}/autogroup")
        if autogroup.exists():
            assert autogroup.read_text().split()[-1] == "7"
            assert Path(f"/proc/{child}/autogroup").read_text() == autogroup.read_text()
            assert autogroup.read_text() != Path("/proc/self/autogroup").read_text()
    finally:
        batch.stop()


def test_a_leader_only_stop_signals_the_leader_and_kills_what_it_leaves(tmp_path):
    """The stream job's way: SIGTERM to the driver alone (its JVM must not get one), then nothing left behind."""
    child = ("import signal, sys, time, pathlib; p = pathlib.Path(sys.argv[1]); "
             "signal.signal(signal.SIGTERM, lambda *_: (p.write_text('child got SIGTERM'), sys.exit(1))); "
             "p.write_text('child up'); time.sleep(600)")
    leader = ("import signal, subprocess, sys, time, pathlib; "
              f"c = subprocess.Popen([sys.executable, '-c', {child!r}, sys.argv[1]]); "
              "pathlib.Path(sys.argv[2]).write_text(str(c.pid)); "
              "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); time.sleep(600)")
    child_file, child_pid = tmp_path / "child", tmp_path / "child.pid"
    job = ManagedProcess(name="job", state_dir=tmp_path, argv=[sys.executable, "-c", leader, str(child_file),
                                                               str(child_pid)],
                         ready=lambda: child_file.exists() and child_pid.exists(), signal_leader_only=True)
    assert job.start(timeout_s=20)
    leader_pid, orphan = job.pid(), int(child_pid.read_text())
    assert leader_pid is not None
    assert job.stop(timeout_s=10)
    assert not pid_alive(leader_pid) and not pid_alive(orphan)
    assert child_file.read_text() == "child up"  # never signalled: killed once the leader had gone

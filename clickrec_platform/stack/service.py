"""What every service of the local stack has in common, and the one description most of them are.

A :class:`ServiceSpec` is data: the command, the port, the health probe and the optional set-up steps of a
service, each a function of the settings. :class:`DeclaredService` runs any spec through the same
:class:`~clickrec_platform.stack.process.ManagedProcess` machinery. Only the services that own state beyond a
process stay classes of their own: PostgreSQL (its cluster directory and password), Kafka and Spark (the
members of a cluster, each with its node id and storage).
"""

from __future__ import annotations

import signal
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from clickrec_platform.settings import Settings
from clickrec_platform.stack.process import ManagedProcess


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


class LocalService(ABC):
    """A service that ``clickrec up`` can run on this machine, or find already running elsewhere."""

    name: str
    # What `managed_services` calls it: the name, or the family of a clustered service's members
    # ("kafka" for the cluster topology's kafka-1..3, "spark" for its master and workers).
    family: str | None = None
    # Started only when asked for by name (or by `clickrec demo`), never by a plain `clickrec up`;
    # `clickrec down` and `clickrec status` cover it whenever it runs.
    on_request: bool = False

    def __init__(self, settings: Settings):
        self.settings = settings

    @property
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def process(self) -> ManagedProcess:
        """How to run it locally."""

    def prepare(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """One-time work before the first start (format storage, create a cluster, write config)."""

    def after_ready(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Idempotent work once it answers (create topics, databases)."""

    @abstractmethod
    def health(self) -> Health:
        """Ask the running service itself whether it works."""

    @property
    def managed(self) -> bool:
        return self.on_request or (self.family or self.name) in self.settings.managed_services

    @property
    def niceness(self) -> int:
        """Its scheduling priority: `batch_nice` for the batch services (`batch_services`), else 0."""
        return self.settings.batch_nice if self.name in self.settings.batch_services else 0

    def launch_process(self) -> ManagedProcess:
        """The process as `start` launches it: at the service's niceness."""
        process = self.process()
        process.nice = max(process.nice, self.niceness)
        return process

    def start(self) -> bool:
        """Bring it up (if managed here) and finish its setup. True if this call started a process."""
        started = False
        if self.managed:
            self.prepare()
            started = self.launch_process().start(self.settings.startup_timeout_s)
        self.after_ready()
        return started

    def stop(self) -> bool:
        return self.managed and self.process().stop()


SettingsFn = Callable[[Settings], str]


@dataclass(frozen=True)
class ServiceSpec:
    """A service of the stack as data; every function takes the settings."""

    name: str
    command: Callable[[Settings], list[str]]  # built when starting (it may resolve binaries or jars)
    probe: Callable[[Settings], Health]  # asks the running service whether it works
    url: SettingsFn
    port: Callable[[Settings], int | None] | None = None  # where it listens, on `bind_host` (None: nowhere)
    marker: str | SettingsFn = ""  # in its /proc cmdline, so a recycled pid is never taken for it
    env: Callable[[Settings], Mapping[str, str]] | None = None  # built when starting: secrets stay out of argv
    cwd: Path | None = None
    prepare: Callable[[Settings], None] | None = None  # before each start (config files, folders)
    after_ready: Callable[[Settings], None] | None = None  # idempotent, once it answers (a bucket, topics)
    ready: Callable[[Settings], bool] | None = None  # when `start` stops waiting; default: the probe is ok
    on_request: bool = False  # see `LocalService.on_request`
    stop_signal: signal.Signals = signal.SIGTERM
    signal_leader_only: bool = False  # see `ManagedProcess.signal_leader_only`


class DeclaredService(LocalService):
    """A :class:`ServiceSpec` as a service of the stack."""

    def __init__(self, settings: Settings, spec: ServiceSpec):
        super().__init__(settings)
        self.spec = spec
        self.name = spec.name
        self.on_request = spec.on_request

    def __repr__(self) -> str:
        return f"DeclaredService({self.name!r})"

    @property
    def url(self) -> str:
        return self.spec.url(self.settings)

    def process(self) -> ManagedProcess:
        s, spec = self.settings, self.spec
        port = spec.port(s) if spec.port else None
        marker = spec.marker(s) if callable(spec.marker) else spec.marker
        ready = spec.ready or (lambda settings: spec.probe(settings).ok)
        environment = spec.env
        return ManagedProcess(
            name=spec.name, argv=lambda: spec.command(s), state_dir=s.state_dir, ready=lambda: ready(s),
            ports=[(s.bind_host, port)] if port else [],
            env=(lambda: environment(s)) if environment else dict,
            cwd=spec.cwd, cmdline_marker=marker, stop_signal=spec.stop_signal,
            signal_leader_only=spec.signal_leader_only)

    def prepare(self) -> None:
        if self.spec.prepare:
            self.spec.prepare(self.settings)

    def after_ready(self) -> None:
        if self.spec.after_ready:
            self.spec.after_ready(self.settings)

    def health(self) -> Health:
        return self.spec.probe(self.settings)


def executable(name: str) -> str:
    """A command installed beside this Python (`clickrec`, `mlflow`, `dagster`, …)."""
    return str(Path(sys.executable).with_name(name))


def http_health(url: str, describe: Callable[[httpx.Response], str], timeout_s: float = 3.0) -> Health:
    """Healthy when ``url`` answers 200; the detail ``describe`` makes of the answer, or why it did not."""
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return Health(False, f"{type(exc).__name__}: {exc}")
    return Health(response.status_code == 200, describe(response))

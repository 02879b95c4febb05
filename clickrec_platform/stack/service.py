"""What every service of the local stack has in common."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

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

"""`clickrec setup`: what the platform needs on a fresh Debian machine, installed once.

Idempotent and quick when done: Debian packages only when their command is missing, jars only
when their pom changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from clickrec_platform.settings import Settings
from clickrec_platform.stack.jars import BUNDLES
from clickrec_platform.stack.process import ServiceError

# command that must exist -> Debian package that provides it
DEBIAN_PACKAGES = {
    "java": "openjdk-17-jre-headless",
    "mvn": "maven",
    "runuser": "util-linux",
    "wrk": "wrk",  # the HTTP load generator of `clickrec bench api`
    "chromium": "chromium",  # the headless browser the dashboard's tests load it in
}


def _postgres_installed() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/postgres")) or shutil.which("postgres") is not None


def missing_debian_packages(settings: Settings) -> list[str]:
    wanted = [pkg for cmd, pkg in DEBIAN_PACKAGES.items() if shutil.which(cmd) is None]
    if "postgres" in settings.managed_services and not _postgres_installed():
        wanted.append("postgresql")
    # promtool comes with it: the suite's alert-rule tests run it.
    if "prometheus" in settings.managed_services and shutil.which("prometheus") is None:
        wanted.append("prometheus")
    return wanted


def install_debian_packages(packages: list[str]) -> None:
    if not packages:
        return
    if os.geteuid() != 0:
        raise ServiceError(f"Missing Debian packages {packages}: run `sudo apt-get install "
                           f"{' '.join(packages)}` (or `clickrec setup` as root).")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise ServiceError(f"`{' '.join(argv)}` failed:\n{result.stderr[-2000:]}")


def run_setup(settings: Settings, report: Callable[[str], None] = print) -> None:
    packages = missing_debian_packages(settings)
    if packages:
        report(f"installing Debian packages: {', '.join(packages)}")
        install_debian_packages(packages)
    for bundle in BUNDLES:
        if bundle.resolve(settings):
            report(f"resolved {bundle.name} jars into {bundle.folder(settings)}")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    report("setup complete")

"""`clickrec`: one command line for the whole platform (`commands`), what it prints (`terminal`) and the
demo's orchestration as a plain module (`demo`)."""

from clickrec_platform.cli.commands import app

__all__ = ["app"]

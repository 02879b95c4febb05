"""Benchmarks: commands that print figures (`clickrec bench …`). Targets are met here, not in tests."""

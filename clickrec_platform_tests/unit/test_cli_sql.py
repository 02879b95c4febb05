"""`clickrec sql` answers a failed query with one line naming the problem, and exit status 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def clickrec_sql(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "clickrec"), "sql", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "CLICKREC_LAKE_ROOT": str(tmp_path / "lake")})


@pytest.mark.parametrize(("query", "problem"), [
    ("SELEC 1", "ParserException: Parser Error: syntax error at or near \"SELEC\""),
    ("SELECT * FROM silver.nowhere", "CatalogException: Catalog Error: Table with name nowhere does not exist!"),
    ("SELECT 1/0::INTEGER, 'x'::INTEGER", "ConversionException: Conversion Error"),
])
def test_a_failed_query_is_one_line_and_exit_1(tmp_path, query, problem):
    answered = clickrec_sql(tmp_path, query)
    assert answered.returncode == 1
    assert "Traceback" not in answered.stderr + answered.stdout
    lines = answered.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {problem}"), answered.stderr


def test_a_query_that_works_still_answers(tmp_path):
    answered = clickrec_sql(tmp_path, "--format", "csv", "SELECT 42 AS answer")
    assert (answered.returncode, answered.stdout) == (0, "answer\n42\n"), answered.stderr

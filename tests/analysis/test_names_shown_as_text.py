"""Names and values from outside are shown as text: a tenant called ``[/bold]`` or a job id that is rich markup
for a link does not crash or restyle the terminal output, a value carrying a terminal escape sequence shows
it as ``\\x1b``, and HTML in a name is escaped in the report's page."""

from __future__ import annotations

import re
import time
from pathlib import Path

from kafka.consumer.fetcher import ConsumerRecord
from typer.testing import CliRunner

from fleetmeter.cli import app
from tests.pipeline.test_compaction import writer_for
from tests.pipeline.test_validate import message, row

TENANT = "[/bold]<script>alert(1)</script>"
JOB = "[link=https://evil.example/]click me[/link]"
runner = CliRunner()


def hostile_warehouse(directory: Path) -> Path:
    writer = writer_for(directory)
    now_ms = int(time.time() * 1000) // 60_000 * 60_000
    payload = message(*[row(ts=now_ms - 3_600_000 + step * 10_000, tenant=TENANT, job_id=JOB, device_uuid="GPU-1",
                            model=TENANT) for step in range(30)])
    writer.add([ConsumerRecord("t", 0, -1, 0, now_ms, 0, b"n", payload, [], None, 1, len(payload), 0)], now_ms)
    writer.flush(lambda next_offset: None)
    return directory


def test_query_shows_markup_and_escape_sequences_as_text(tmp_path: Path) -> None:
    warehouse = hostile_warehouse(tmp_path)
    sql = ("SELECT tenant, job_id, chr(27) || ']8;;https://evil.example/' || chr(7) || 'x' AS \"[/red]\" "
           "FROM samples LIMIT 1")
    result = runner.invoke(app, ["query", "--warehouse", str(warehouse), sql])
    assert result.exit_code == 0, result.output
    assert TENANT in result.output and JOB in result.output and "[/red]" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]8;;https://evil.example/\\x07x" in result.output


def test_report_prints_and_writes_the_page_with_the_names_as_text(tmp_path: Path) -> None:
    warehouse = hostile_warehouse(tmp_path / "warehouse")
    page = tmp_path / "report.html"
    result = runner.invoke(app, ["report", "--warehouse", str(warehouse), "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert TENANT in result.output  # unpriced model and tenant tables name it as it is
    html = page.read_text()
    assert "<script>" not in html
    assert "[/bold]&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r"<a\b[^>]*evil\.example", html)

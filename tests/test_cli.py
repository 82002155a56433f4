"""`fleetmeter collect` as an operator runs it: a real process, a real /metrics endpoint, a real broker."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetmeter.demo.broker import EmbeddedBroker, free_port
from tests.conftest import consume

FLEETMETER = shutil.which("fleetmeter") or str(Path(sys.executable).parent / "fleetmeter")


def test_collect_serves_metrics_while_samples_reach_the_topic(kafka_broker: EmbeddedBroker, topic: str,
                                                              tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [FLEETMETER, "collect", "--backend", "simulated", "--bootstrap-servers", kafka_broker.bootstrap_servers,
         "--topic", topic, "--metrics-port", str(port), "--interval", "10", "--speedup", "100",
         "--spool-dir", str(tmp_path / "spool"), "--nodes", "2", "--devices-per-node", "8", "--run-for", "60"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        exposition = ""
        deadline = time.monotonic() + 20
        while exposition.count("fleetmeter_device_utilization_ratio{") < 16 and time.monotonic() < deadline:
            time.sleep(0.1)  # the two simulated nodes' first scrapes reach the registry one after the other
            with contextlib.suppress(OSError):
                exposition = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        families = {family.name: family for family in text_string_to_metric_families(exposition)}
        assert len(families["fleetmeter_device_utilization_ratio"].samples) == 16
        assert families["fleetmeter_collector_scrape_success"].samples[0].value == 1
        process.terminate()  # SIGTERM: flush, close, exit 0
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert '"event": "collector stopped"' in stderr
    finally:
        process.kill()
    messages = consume(kafka_broker.bootstrap_servers, topic)
    assert messages and all(table.num_rows == 8 for _, _, table in messages)


def test_a_bad_configuration_names_the_field_before_anything_starts(tmp_path: Path) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text("interval_s: -5\nkafka:\n  topicc: typo\n")
    result = subprocess.run([FLEETMETER, "collect", "--config", str(config)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "interval_s" in result.stderr and "kafka.topicc" in result.stderr


def test_layers_flags_over_environment_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fleetmeter.collectors.settings import CollectorSettings
    from fleetmeter.common.settings import load_settings

    config = tmp_path / "collector.toml"
    config.write_text('interval_s = 30\nnode = "from-file"\n[kafka]\ntopic = "file-topic"\nclient_id = "file-id"\n')
    monkeypatch.setenv("FLEETMETER_KAFKA__TOPIC", "env-topic")
    monkeypatch.setenv("FLEETMETER_NODE", "from-env")
    settings = load_settings(CollectorSettings, config_file=config, node="from-flag", interval_s=None)
    assert settings.interval_s == 30 and settings.node == "from-flag"
    assert settings.kafka.topic == "env-topic" and settings.kafka.client_id == "file-id"


def node_has_nvidia_gpus() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(node_has_nvidia_gpus(), reason="this node has GPUs, so auto finds them")
def test_auto_without_accelerators_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run([FLEETMETER, "collect", "--backend", "auto", "--spool-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--backend simulated" in result.stderr


#: Each daemon, told to listen on {port} (127.0.0.1), and the setting its error must name.
DAEMONS = {
    "collect": (["collect", "--backend", "simulated", "--metrics-port", "{port}", "--spool-dir", "{tmp}/spool",
                 "--bootstrap-servers", "127.0.0.1:1"], "metrics.port, --metrics-port"),
    "pipeline run": (["pipeline", "run", "--metrics-port", "{port}", "--warehouse", "{tmp}/warehouse",
                      "--bootstrap-servers", "127.0.0.1:1"], "metrics.port, --metrics-port"),
    "serve": (["serve", "--port", "{port}", "--warehouse", "{tmp}/warehouse"], "http.port, --port"),
    "anomalies": (["anomalies", "--watch", "--metrics-port", "{port}", "--warehouse", "{tmp}/warehouse"],
                  "--metrics-port"),
}


@pytest.mark.parametrize("daemon", DAEMONS)
def test_a_daemon_whose_port_is_taken_exits_at_once_with_one_line_naming_port_and_setting(
        daemon: str, tmp_path: Path) -> None:
    import socket

    arguments, setting = DAEMONS[daemon]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [FLEETMETER, *(a.format(port=port, tmp=tmp_path) for a in arguments)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, env={
            **os.environ, "FLEETMETER_METRICS__ADDRESS": "127.0.0.1", "FLEETMETER_HTTP__ADDRESS": "127.0.0.1"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"fleetmeter {daemon}: cannot listen on 127.0.0.1:{port} (set by {setting}): Address already in use"]


def test_auto_mixed_with_named_backends_is_refused_clearly(tmp_path: Path) -> None:
    result = subprocess.run([FLEETMETER, "collect", "--backend", "simulated,auto", "--spool-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "auto cannot be combined" in result.stderr


def test_the_collector_command_loads_no_pipeline_analysis_or_report_libraries() -> None:
    """The daemon on every node stays small: polars, DuckDB and matplotlib are loaded only by their commands."""
    probe = ("import sys; from typer.testing import CliRunner; from fleetmeter.cli import app; "
             "result = CliRunner().invoke(app, ['collect', '--help']); "
             "print(result.exit_code, 'fleetmeter.collectors.daemon' in sys.modules, "
             "sorted({m.split('.')[0] for m in sys.modules} & {'polars', 'duckdb', 'matplotlib'}))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "0 True []"


@pytest.mark.parametrize(("name", "text", "message"), [
    ("syntax.yaml", "kafka:\n  topic: [unclosed\n", "syntax.yaml, line 3, column 1: expected ',' or ']'"),
    ("deep.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n", "config_file: nested too deeply"),
    ("syntax.toml", "[kafka\ntopic = 1\n", "config_file: Expected ']'"),
])
def test_a_broken_config_file_is_one_line_naming_the_place(tmp_path: Path, name: str, text: str, message: str,
                                                            ) -> None:
    (tmp_path / name).write_text(text)
    for command in (["pipeline", "run"], ["collect", "--backend", "simulated", "--spool-dir", str(tmp_path)]):
        result = subprocess.run([FLEETMETER, *command, "--config", str(tmp_path / name)], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr

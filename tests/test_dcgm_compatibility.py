"""`metrics.profile: dcgm` as a dcgm-exporter user sees it: a real Prometheus scrapes a simulated collector (a
node with two time-sliced GPUs), and every query of NVIDIA's published dcgm-exporter dashboard and of OpenCost's
GPU queries returns series, with values in range.

The queries are facts copied from their repositories (not from fleetmeter):
- NVIDIA/dcgm-exporter, grafana/dcgm-exporter-dashboard.json (last changed in cffaeb8, 2023-08-11): the eight
  panels' expressions and the two template variables ``label_values(DCGM_FI_DEV_GPU_TEMP, instance|gpu)``;
  Grafana's "All" expands a multi-value variable into an alternation of its values.
- opencost/opencost: modules/prometheus-source/pkg/prom/metricsquerier.go (allocation: GPU usage average and
  maximum, GPU info), gpudevicequerier.go (per-device averages) and gpusaturationquerier.go (saturation), with
  their default cluster label ``cluster_id``, no cluster filter, a 5-minute window and subqueries at 1-minute
  resolution (OpenCost's default is 5 minutes: 1 keeps the test short; the expressions are otherwise verbatim).
  Not run: the throttle-violation queries, over DCGM_FI_DEV_*_VIOLATION, which dcgm-exporter's default counters
  leave out too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from fleetmeter.demo.broker import free_port
from tests.deploy.exposed import daemon, read_series
from tests.prometheus_server import needs_prometheus, query, scraping_prometheus

DEVICES, TIME_SLICED = 8, 2
#: (expression, lowest, highest value)
DASHBOARD = [
    ('DCGM_FI_DEV_GPU_TEMP{instance=~"$instance", gpu=~"$gpu"}', 0, 120),
    ('avg(DCGM_FI_DEV_GPU_TEMP{instance=~"$instance", gpu=~"$gpu"})', 0, 120),
    ('DCGM_FI_DEV_POWER_USAGE{instance=~"$instance", gpu=~"$gpu"}', 0, 1500),
    ('sum(DCGM_FI_DEV_POWER_USAGE{instance=~"$instance", gpu=~"$gpu"})', 0, 1500 * DEVICES),
    ('DCGM_FI_DEV_SM_CLOCK{instance=~"$instance", gpu=~"$gpu"} * 1000000', 0, 3e9),
    ('DCGM_FI_DEV_GPU_UTIL{instance=~"$instance", gpu=~"$gpu"}', 0, 100),
    ('DCGM_FI_DEV_FB_USED{instance=~"$instance", gpu=~"$gpu"}', 0, 80 * 1024),
    ('DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{instance=~"$instance", gpu=~"$gpu"}', 0, 1),
]
ALLOCATION_BY = "container, pod, namespace, uid, cluster_id"
DEVICE_BY = "device, modelName, UUID, GPU_I_PROFILE, GPU_I_ID, cluster_id"
SATURATION_BY = "container, pod, namespace, device, modelName, UUID, GPU_I_PROFILE, GPU_I_ID, uid, cluster_id"
OPENCOST = [
    (f'avg(avg_over_time(DCGM_FI_PROF_GR_ENGINE_ACTIVE{{container!=""}}[5m])) by ({ALLOCATION_BY})', 0, 1),
    (f'max(max_over_time(DCGM_FI_PROF_GR_ENGINE_ACTIVE{{container!=""}}[5m])) by ({ALLOCATION_BY})', 0, 1),
    ('avg(avg_over_time(DCGM_FI_DEV_DEC_UTIL{container!="",}[5m])) by (container, pod, namespace, device, '
     'modelName, UUID, uid, cluster_id)', 0, 100),
    (f"avg(avg_over_time(DCGM_FI_DEV_POWER_USAGE{{}}[5m])) by ({DEVICE_BY})", 0, 1500),
    (f"avg(avg_over_time(DCGM_FI_DEV_GPU_TEMP{{}}[5m])) by ({DEVICE_BY})", 0, 120),
    (f"avg(avg_over_time(DCGM_FI_PROF_GR_ENGINE_ACTIVE{{}}[5m])) by ({DEVICE_BY})", 0, 1),
    (f"max(max_over_time(DCGM_FI_PROF_GR_ENGINE_ACTIVE{{}}[5m])) by ({DEVICE_BY})", 0, 1),
    (f"avg(avg_over_time(DCGM_FI_DEV_FB_USED{{}}[5m])) by ({DEVICE_BY})", 0, 80 * 1024),
    (f"max(max_over_time(DCGM_FI_DEV_FB_USED{{}}[5m])) by ({DEVICE_BY})", 0, 80 * 1024),
    (f'avg(avg_over_time(DCGM_FI_PROF_DRAM_ACTIVE{{container!="",}}[5m])) by ({SATURATION_BY})', 0, 1),
    (f'max(max_over_time(DCGM_FI_PROF_DRAM_ACTIVE{{container!="",}}[5m])) by ({SATURATION_BY})', 0, 1),
    (f'avg(avg_over_time(DCGM_FI_PROF_SM_ACTIVE{{container!="",}}[5m])) by ({SATURATION_BY})', 0, 1),
    (f'avg(avg_over_time(DCGM_FI_PROF_SM_OCCUPANCY{{container!="",}}[5m])) by ({SATURATION_BY})', 0, 1),
    *((f'avg(rate({name}{{container!="",}}[5m])) by ({SATURATION_BY})', 0, 1e12)
      for name in ("DCGM_FI_PROF_PCIE_TX_BYTES", "DCGM_FI_PROF_PCIE_RX_BYTES", "DCGM_FI_PROF_NVLINK_TX_BYTES",
                   "DCGM_FI_PROF_NVLINK_RX_BYTES")),
    (f'avg(avg_over_time(DCGM_FI_DEV_FB_USED{{container!="",}}[5m])) by ({SATURATION_BY}) / '
     f'(avg(avg_over_time(DCGM_FI_DEV_FB_USED{{container!="",}}[5m])) by ({SATURATION_BY}) + '
     f'avg(avg_over_time(DCGM_FI_DEV_FB_FREE{{container!="",}}[5m])) by ({SATURATION_BY}))', 0, 1),
    (f'max(max_over_time(DCGM_FI_DEV_FB_USED{{container!="",}}[5m])) by ({SATURATION_BY}) / '
     f'(avg(avg_over_time(DCGM_FI_DEV_FB_USED{{container!="",}}[5m])) by ({SATURATION_BY}) + '
     f'avg(avg_over_time(DCGM_FI_DEV_FB_FREE{{container!="",}}[5m])) by ({SATURATION_BY}))', 0, 1),
    (f'sum(changes(DCGM_FI_DEV_XID_ERRORS{{container!="",}}[5m])) by ({SATURATION_BY})', 0, 1e6),
]
#: Subqueries step on whole minutes: they need a minute boundary inside the scraped span.
OPENCOST_SUBQUERIES = [
    (f'avg(avg_over_time(((DCGM_FI_DEV_FB_USED{{container!="",}} / (DCGM_FI_DEV_FB_USED{{container!="",}} + '
     f'DCGM_FI_DEV_FB_FREE{{container!="",}})) >= bool 0.9)[5m:1m])) by ({SATURATION_BY})', 0, 1),
    (f'label_replace(avg(avg_over_time(((floor((DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{{container!="",}} or '
     f'DCGM_FI_DEV_CLOCKS_EVENT_REASONS{{container!="",}}) / 64)) % 2)[5m:1m])) by ({SATURATION_BY}), "reason", '
     f'"hw_thermal", "", "")', 0, 1),
]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus scraping, every second, a dcgm-profile collector of one simulated node (8 GPUs, the last two
    time-sliced by a second pod) that has reported a few intervals."""
    directory = tmp_path_factory.mktemp("dcgm")
    port = free_port()
    arguments = ["collect", "--backend", "simulated", "--profile", "dcgm", "--nodes", "1", "--devices-per-node",
                 str(DEVICES), "--interval", "10", "--speedup", "10", "--metrics-port", str(port), "--spool-dir",
                 str(directory / "spool"), "--bootstrap-servers", "127.0.0.1:1"]  # Kafka away: the spool keeps it
    environment = {"FLEETMETER_METRICS__ADDRESS": "127.0.0.1",
                   "FLEETMETER_SIMULATED__TIME_SLICED_PER_NODE": str(TIME_SLICED),
                   "FLEETMETER_SHUTDOWN_TIMEOUT_S": "0"}  # nothing to deliver to: stop at once
    with daemon(arguments, directory / "collector.log", environment):
        deadline = time.monotonic() + 30
        while "DCGM_FI_DEV_GPU_UTIL" not in _series_or_nothing(port):
            assert time.monotonic() < deadline, (directory / "collector.log").read_text()[-3000:]
            time.sleep(0.2)
        with contextlib.contextmanager(scraping_prometheus)(directory, "dcgm-exporter", [f"127.0.0.1:{port}"]) as url:
            while len(query(url, "DCGM_FI_DEV_GPU_UTIL[1m]")) == 0 or min(
                    len(series["values"]) for series in query(url, "DCGM_FI_DEV_GPU_UTIL[1m]")) < 4:
                time.sleep(0.5)  # a few scrapes, so that rates and changes have two points
            yield url


def _series_or_nothing(port: int) -> dict[str, object]:
    with contextlib.suppress(OSError):
        return dict(read_series(port))
    return {}


def _values(url: str, expression: str) -> list[tuple[dict[str, str], float]]:
    return [(item["metric"], float(item["value"][1])) for item in query(url, expression)]


def _dashboard_variables(url: str) -> dict[str, str]:
    """Each template variable as Grafana's "All" writes it into a regex matcher: (a|b|...)."""
    variables = {}
    for name in ("instance", "gpu"):
        values = sorted({labels[name] for labels, _ in _values(url, "DCGM_FI_DEV_GPU_TEMP")})
        variables[name] = "(" + "|".join(values) + ")"
    return variables


@needs_prometheus
def test_every_panel_of_nvidias_dcgm_exporter_dashboard_draws(prometheus: str) -> None:
    variables = _dashboard_variables(prometheus)
    assert variables["gpu"] == "(" + "|".join(sorted(str(i) for i in range(DEVICES))) + ")"
    for expression, low, high in DASHBOARD:
        for name, value in variables.items():
            expression = expression.replace(f"${name}", value)
        found = _values(prometheus, expression)
        assert found, expression
        assert all(low <= value <= high for _, value in found), (expression, found)


@needs_prometheus
def test_opencosts_gpu_queries_return_series_in_range_joined_on_pods(prometheus: str) -> None:
    for expression, low, high in OPENCOST:
        found = _values(prometheus, expression)
        assert found, expression
        assert all(low <= value <= high for _, value in found), (expression, found)
    usage = _values(prometheus, OPENCOST[0][0])
    assert all(labels["container"] and labels["pod"] and labels["namespace"] for labels, _ in usage)
    info = _values(prometheus, OPENCOST[2][0])  # OpenCost reads each container's GPU from these labels
    assert all(labels["device"].startswith("nvidia") and labels["UUID"].startswith("GPU-") and labels["modelName"]
               for labels, _ in info)


@needs_prometheus
def test_a_time_sliced_gpu_has_a_series_per_pod_that_add_up_to_the_device(prometheus: str) -> None:
    """The last two GPUs are shared: each pod's series holds its part of utilization and power; a property of
    the device (temperature) is the same on every pod's series."""
    pods = _values(prometheus, 'count by (gpu) (DCGM_FI_DEV_GPU_UTIL{pod!=""})')
    per_gpu = {labels["gpu"]: value for labels, value in pods}
    shared = [str(index) for index in range(DEVICES - TIME_SLICED, DEVICES)]
    assert any(per_gpu.get(gpu) == 2 for gpu in shared), per_gpu
    assert all(per_gpu.get(str(index), 0) <= 1 for index in range(DEVICES - TIME_SLICED)), per_gpu
    for gpu in shared:
        if per_gpu.get(gpu) != 2:
            continue
        engine = _values(prometheus, f'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{gpu="{gpu}"}}')
        util = _values(prometheus, f'DCGM_FI_DEV_GPU_UTIL{{gpu="{gpu}"}}')
        temps = {value for _, value in _values(prometheus, f'DCGM_FI_DEV_GPU_TEMP{{gpu="{gpu}"}}')}
        assert len({labels["pod"] for labels, _ in engine}) == 2 and len(temps) == 1
        assert sum(value for _, value in engine) <= 1.0
        assert sum(value for _, value in util) == pytest.approx(100 * sum(value for _, value in engine))
        assert all(labels["UUID"].startswith("GPU-") and labels["pci_bus_id"] and labels["Hostname"]
                   and labels["DCGM_FI_DRIVER_VERSION"] for labels, _ in engine)


@needs_prometheus
@pytest.mark.timeout(180)
def test_opencosts_subqueries_return_series_in_range(prometheus: str) -> None:
    """They step on whole minutes: wait for one to pass inside what Prometheus has scraped."""
    started = min(float(series["values"][0][0]) for series in query(prometheus, "DCGM_FI_DEV_GPU_UTIL[5m]"))
    next_minute = (started // 60 + 1) * 60
    time.sleep(max(0.0, next_minute + 2 - time.time()))
    for expression, low, high in OPENCOST_SUBQUERIES:
        found = _values(prometheus, expression)
        assert found, expression
        assert all(low <= value <= high for _, value in found), (expression, found)


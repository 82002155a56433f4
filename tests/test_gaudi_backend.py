"""The gaudi backend through the real ``pyhlml`` package over a fake ``libhlml.so``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleetmeter.collectors.backends import gaudi
from fleetmeter.collectors.backends.base import BackendUnavailable
from tests.fakes.fake_libhlml import GIB, FakeGaudi, FakeLibHlml
from tests.fakes.shared_library import loaded_as

AIP_IS_LOST = 15


def node() -> list[FakeGaudi]:
    """A Gaudi 3 with everything and a Gaudi 2 whose firmware lacks energy, ECC and PCIe counters."""
    return [
        FakeGaudi("01P0-HL3090A0-15-TNPS34-20-07-03", aip_util=73, memory_used=90 * GIB, power_mw=612_500,
                  energy_mj=5_000_000, temp_c=61, throttle_mask=0x2, ecc={0: 3, 1: 1},
                  pcie_kib_per_s={0: 1000, 1: 3000}),
        FakeGaudi("01P0-HL2080A0-15-TNPS34-20-07-04", name="HL-225", memory_total=96 * GIB,
                  unsupported={"hlml_device_get_total_energy_consumption", "hlml_device_get_total_ecc_errors",
                               "hlml_device_get_pcie_throughput"}),
    ]


@pytest.fixture
def library(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLibHlml]:
    with loaded_as(monkeypatch, "libhlml.so", FakeLibHlml(node()), "pyhlml") as fake:
        yield fake


def test_each_accelerator_is_a_device(library: FakeLibHlml) -> None:
    devices = gaudi.create("gaudi-node").discover()
    assert [(d.uuid, d.index, d.kind, d.vendor, d.model) for d in devices] == [
        ("01P0-HL3090A0-15-TNPS34-20-07-03", 0, "hpu", "intel", "Intel Gaudi HL-325L"),
        ("01P0-HL2080A0-15-TNPS34-20-07-04", 1, "hpu", "intel", "Intel Gaudi HL-225"),
    ]


def test_a_full_device_fills_the_normalized_columns(library: FakeLibHlml) -> None:
    reading = gaudi.create("gaudi-node").read(0)[0]
    assert reading.util_compute == 0.73
    assert (reading.mem_used_bytes, reading.mem_total_bytes) == (90 * GIB, 128 * GIB)
    assert (reading.power_w, reading.temp_c, reading.sm_clock_mhz) == (612.5, 61.0, 1600.0)
    assert reading.counters["energy_j"].value == 5_000.0  # mJ -> J
    assert (reading.counters["ecc_corrected"].value, reading.counters["ecc_uncorrected"].value) == (3, 1)
    assert reading.throttle_reasons == ("sw_thermal",)
    assert reading.rates == {"pcie_tx_bytes": 1000 * 1024.0, "pcie_rx_bytes": 3000 * 1024.0}
    assert reading.processes is None and reading.xid_errors is None  # HLML reports neither


def test_a_partial_device_leaves_what_it_lacks_null_and_is_not_asked_again(library: FakeLibHlml) -> None:
    backend = gaudi.create("gaudi-node")
    for _ in range(3):
        reading = backend.read(0)[1]
    assert reading.counters == {} and reading.rates == {}
    assert reading.mem_total_bytes == 96 * GIB and reading.util_compute == 0.0
    assert library.calls.count("hlml_device_get_total_energy_consumption") == 3 + 1
    assert backend.read_errors() == {}


def test_a_lost_device_is_counted_by_error_class_and_asked_again(library: FakeLibHlml) -> None:
    backend = gaudi.create("gaudi-node")
    library.devices[0].failing["hlml_device_get_utilization_rates"] = AIP_IS_LOST
    assert backend.read(0)[0].util_compute is None
    library.devices[0].failing.clear()
    assert backend.read(0)[0].util_compute == 0.73
    assert backend.read_errors() == {"HLMLError_AipIsLost": 1}  # pyhlml's own class for the code


def test_no_driver_means_the_backend_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    with loaded_as(monkeypatch, "libhlml.so", FakeLibHlml(node(), driver_loaded=False), "pyhlml"), \
            pytest.raises(BackendUnavailable, match="habanalabs driver"):
        gaudi.create("gaudi-node")


def test_without_libhlml_the_message_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BackendUnavailable, match=r"libhlml\.so"):
        gaudi.create("gaudi-node")  # the real pyhlml, and no libhlml.so on this machine
    assert capsys.readouterr().out == ""

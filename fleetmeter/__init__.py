"""fleetmeter: accelerator telemetry from node collectors through Kafka into a Parquet warehouse."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fleetmeter")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

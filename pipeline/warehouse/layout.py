"""Where each table's files go and what their names say.

A file name is ``{topic}+{partition}+{generation}+{first_offset}-{last_offset}.parquet``: the Kafka
partition that owns it, the commit that made it (see ``manifest.py``), and the range of offsets whose
rows it holds (Kafka topic names cannot contain ``+``). Tables are Hive-partitioned by time so that
readers prune by date; the layout is documented for analysts in ``docs/warehouse.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

SAMPLES = "samples"
UTIL_1M = "util_1m"
UTIL_1H = "util_1h"
UTIL_1D = "util_1d"
JOB_DEVICES = "job_devices"
JOBS = "jobs"
QUARANTINE = "quarantine"

TABLES = (SAMPLES, UTIL_1M, UTIL_1H, UTIL_1D, JOB_DEVICES, JOBS, QUARANTINE)


@dataclass(frozen=True)
class FileName:
    topic: str
    partition: int
    generation: int
    first_offset: int
    last_offset: int

    def __str__(self) -> str:
        return f"{self.topic}+{self.partition}+{self.generation}+{self.first_offset}-{self.last_offset}.parquet"

    @classmethod
    def parse(cls, path: str) -> FileName | None:
        """The parts of a warehouse file's name, or None for a file the warehouse did not write."""
        name = path.rpartition("/")[2]
        if not name.endswith(".parquet"):
            return None
        parts = name.removesuffix(".parquet").split("+")
        if len(parts) != 4:
            return None
        topic, partition, generation, offsets = parts
        first, _, last = offsets.partition("-")
        try:
            return cls(topic, int(partition), int(generation), int(first), int(last))
        except ValueError:
            return None


def bucket(table: str, window_start_ms: int) -> str:
    """The directory of ``table`` that holds rows (or windows) starting at ``window_start_ms``."""
    moment = datetime.fromtimestamp(window_start_ms / 1000, tz=UTC)
    if table in (SAMPLES, UTIL_1M):
        return f"{table}/date={moment:%Y-%m-%d}/hour={moment:%H}"
    if table in (UTIL_1H, QUARANTINE):
        return f"{table}/date={moment:%Y-%m-%d}"
    if table == UTIL_1D:
        return f"{table}/month={moment:%Y-%m}"
    return table


#: How wide a bucket of each time-partitioned table is, in polars duration syntax.
BUCKET_WIDTH = {SAMPLES: "1h", UTIL_1M: "1h", UTIL_1H: "1d", UTIL_1D: "1mo", QUARANTINE: "1d"}


def state_path(topic: str, partition: int) -> str:
    return f"_state/{topic}/partition={partition}.json"

"""Import sources made in the tests."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from fleetmeter.pipeline.importing import runner


class Rows:
    """Batches given as a list: what a collector stored before the import, in these tests."""

    def __init__(self, identity: str, batches: list[pa.RecordBatch]) -> None:
        self.identity = identity
        self.rows = batches

    def batches(self, first: int) -> Iterator[runner.Batch]:
        return (runner.Batch(batch) for batch in self.rows[first:])

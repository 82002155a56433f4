"""sql/views.sql against the warehouse catalogue (schemas/warehouse.py): the views read only catalogued tables
and merge every catalogued measure by its rule, so a measure added to the catalogue cannot be left out of
(or merged wrongly in) the views."""

from __future__ import annotations

import re

from fleetmeter.schemas.warehouse import DERIVED, DEVICE_1H, JOB_DEVICES, TABLES, UTIL_1M, Measure
from fleetmeter.sql.catalog import VIEWS

_SQL_MERGE = {"sum": "sum", "max": "max", "min": "min", "sum_bins": "hist_add"}


def view(name: str) -> str:
    text = VIEWS.read_text()
    start = text.index(f"CREATE OR REPLACE VIEW {name} AS")
    return text[start:text.index(";", start)]


def merged_as_catalogued(sql: str, measures: tuple[Measure, ...]) -> list[str]:
    """The measures that ``sql`` does not merge as ``<rule>(<name>) AS <name>``."""
    return [measure.name for measure in measures
            if not re.search(rf"\b{_SQL_MERGE[measure.merge]}\({measure.name}\) AS {measure.name}\b", sql)]


def test_the_views_merge_every_catalogued_measure_by_its_rule() -> None:
    assert merged_as_catalogued(view("rollups"), UTIL_1M.measures) == []
    assert merged_as_catalogued(view("job_devices"), JOB_DEVICES.measures) == []
    assert merged_as_catalogued(view("device_1h"), DEVICE_1H.measures) == []


def test_the_views_read_only_catalogued_tables() -> None:
    assert set(re.findall(r"\bstored\.(\w+)", VIEWS.read_text())) <= set(TABLES) | set(DERIVED)

"""An import's configuration: the pipeline's (warehouse, validation, Kafka) and the Prometheus source's."""

from __future__ import annotations

from fleetmeter.collectors.prometheus.source import PrometheusImportSettings
from fleetmeter.pipeline.importing.files import FileColumns
from fleetmeter.pipeline.settings import PipelineSettings


class ImportSettings(PipelineSettings):
    prometheus: PrometheusImportSettings = PrometheusImportSettings()
    file: FileColumns = FileColumns()

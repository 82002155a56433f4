"""A configuration changes parts of a built-in mapping and keeps the rest."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fleetmeter.collectors.prometheus.mapping import DCGM, MappingChanges, resolve


def test_changes_keep_what_they_do_not_name() -> None:
    mapping = resolve("dcgm", MappingChanges.model_validate(
        {"labels": {"cluster": "k8s_cluster", "node": "node"}, "tenant_from": ["label:team", "namespace"],
         "columns": {"util_mem_bw": [], "power_w": [{"metric": "DCGM_FI_DEV_POWER_USAGE_INSTANT"}]}}))
    assert (mapping.labels.node, mapping.labels.cluster) == ("node", "k8s_cluster")
    assert mapping.labels.instance == "GPU_I_ID" and mapping.labels.device == "UUID"  # kept
    assert mapping.tenant_from == ["label:team", "namespace"] and mapping.job_from == DCGM.job_from
    assert "util_mem_bw" not in mapping.columns
    assert [source.metric for source in mapping.columns["power_w"]] == ["DCGM_FI_DEV_POWER_USAGE_INSTANT"]
    assert mapping.columns["energy_j"] == DCGM.columns["energy_j"]


@pytest.mark.parametrize("changes", [
    {"tenant_from": ["annotation:team"]},  # pods' annotations are not on series
    {"columns": {"power_w": [{"metric": 'x"} or vector(1) #'}]}},  # not a selector: no PromQL through the config
    {"columns": {"power_w": [{"metric": "x", "scale": float("nan")}]}},
    {"columns": {"gpu_util": [{"metric": "x"}]}},  # not a column
    {"labels": {"node": ""}},
])
def test_changes_that_cannot_work_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        resolve("dcgm", MappingChanges.model_validate(changes))

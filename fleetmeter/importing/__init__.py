"""``fleetmeter import``: history from outside Kafka (files, a Prometheus) into the warehouse or onto the topic.
It sits above collectors and pipeline: sources are read on the collectors' side, stored on the pipeline's."""

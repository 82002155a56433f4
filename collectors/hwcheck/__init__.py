"""The hardware check: the ``nvml`` backend on a real NVIDIA GPU, idle and under a known load, side by side with
what the driver's own tool (``nvidia-smi``) reports, written as a Markdown table of agreements and differences.

Run it on any machine with an NVIDIA GPU and its driver: ``python3 fleetmeter-hwcheck.pyz`` (built by
``./dev hwcheck-bundle``; about 1 MB, it needs only Python 3.11+, the driver and its tools), or from a checkout
with ``python -m fleetmeter.collectors.hwcheck``. docs/hardware-check.md says what it checks and what it found.

It imports only what the nvml backend needs (the backend, nvidia-ml-py's ``pynvml`` and structlog), so that it
fits where there is no network and little room: no pydantic, no pyarrow, no Kafka client.
"""

"""``fleetmeter demo`` (``cli``) and the embedded Kafka-compatible broker (``broker``) that it, the tests
and the benchmarks start; never used in production."""

"""The analysis side: consume samples from Kafka into the Parquet warehouse (see issue: pipeline)."""

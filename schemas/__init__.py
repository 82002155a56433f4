"""The contract between node collectors and the pipeline: sample schema and Kafka wire format."""

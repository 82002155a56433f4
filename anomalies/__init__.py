"""What is going wrong now, with a price: detectors over the warehouse (idle allocations, stragglers), their
findings kept in the anomalies table so that an ongoing anomaly is updated, not repeated (docs/anomalies.md)."""

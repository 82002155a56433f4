"""Imports: rows from outside Kafka through the live path's checks, dedup, rollups and exactly-once commits."""

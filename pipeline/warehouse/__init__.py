"""The Parquet warehouse: where files live, how they are named, and which of them are committed."""

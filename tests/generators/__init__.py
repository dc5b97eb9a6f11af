"""Data for tests and benchmarks, never shipped: records and delivery histories made up in bulk."""

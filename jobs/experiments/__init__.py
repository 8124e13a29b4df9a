"""A/B experiments: definitions, unit-level aggregates, statistics and results."""

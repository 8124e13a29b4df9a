"""Metric definitions in YAML, compiled into fused Spark passes that write `metric_values`."""

"""Monitoring: anomaly detection on metric series (per-series math in `detectors`)."""

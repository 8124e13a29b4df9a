"""Executor-side code of safety-metrics.

Everything in this package may be shipped to and evaluated on executors: Spark column
expressions with fixed semantics and Python functions used by pandas UDFs. It never
imports `jobs` (the driver package), so it can travel alone in `--py-files`.
"""

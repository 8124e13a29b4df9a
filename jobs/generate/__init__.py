"""Synthetic Trust & Safety data with planted, known truth, as lazy Spark DataFrames.

Every value is a hash of (seed, salt, row keys) (see `udfs.seeded_random`), and every row
comes from `spark.range`, so tables are identical for any partitioning, run on Spark Connect,
and scale without driver memory. Attributes of an entity (an account, a video) are pure
functions of its id, so tables agree with each other without joins. `ground_truth` states
the experiments and incidents planted in the data, computed without Spark.

This package only builds DataFrames; writing them (Delta) and the CLI live elsewhere.
"""

"""spark-submit entry point for restatement: recompute exactly the stored dates whose
definitions changed.

Runs `safety-metrics run --restate` with the arguments given after the script (see its
`--help`).
"""

from jobs.submit import submit

if __name__ == "__main__":
    submit(["run", "--restate"])

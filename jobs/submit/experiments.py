"""spark-submit entry point for the experiment job: analyse every active experiment (or --id)
up to the date.

Runs `safety-metrics experiment` with the arguments given after the script (see its
`--help`).
"""

from jobs.submit import submit

if __name__ == "__main__":
    submit(["experiment"])

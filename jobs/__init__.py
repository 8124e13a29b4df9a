"""Driver-side code of safety-metrics: configuration, sessions, Delta sink, jobs, CLI.

Nothing here runs on executors; executor code lives in the separate `udfs` package.
"""

"""Shared infrastructure every capability uses and none of it uses a capability: the
configuration and session, the Delta sink (`delta/`), located YAML errors, exit statuses,
logging, run dates and the run log."""

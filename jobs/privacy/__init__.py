"""Disclosure control for `metric_values`: an exact audit of what published rows reveal about
suppressed ones (`audit`), and the protection that makes every run pass it (`protect`).

See docs/privacy.md for the threat model, the routes and the parameters.
"""

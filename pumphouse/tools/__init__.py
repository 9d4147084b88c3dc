"""Operator commands that act on the sources from outside a running service
(``pumphouse redrive``): they share the configuration and AWS client helpers, never the
pollers' pipeline."""

"""Probing with real packets: `agent` runs inside probe pods, `runner` creates, watches, reads and deletes them.

This package's __init__ must stay empty of imports: the agent starts from here in every probe pod, and the
runner's dependencies (the cluster adapter) must never load there.
"""

"""netpol-drift: proves what Kubernetes NetworkPolicies really do.

The package is a one-way pipeline (see DESIGN.md): snapshot -> plan -> probe -> compare -> store -> alert.
This module must stay import-free so that `python -m monitor` and the probe agent start fast.
"""

__version__ = "0.1.0"

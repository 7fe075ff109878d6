"""The lab: a real kube-apiserver + etcd, kube-router enforcing NetworkPolicies, pods as network namespaces.

Job: give integration tests and the demo a real control plane and a real, independent policy enforcer on one
Linux machine without containers (see tests/lab/README.md and ../shared/LAB.md). Must not: mock any part of
Kubernetes, touch the root namespace's firewall, or send traffic anywhere but loopback and its own namespaces.
"""

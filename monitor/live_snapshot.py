"""take_snapshot: what the engine needs of a live cluster, read through the cluster adapter, as a Snapshot.

It lives apart from monitor.snapshot (pure data work on snapshots) because it drives the adapter; the result is
the same canonical models.Snapshot that the manifests reader produces, so the digest (snapshot_digest), the
store and the diff treat live and offline snapshots alike.
This module must not import kubernetes (monitor.cluster does that), nor read the clock: the run passes `now`.
"""

from __future__ import annotations

import logging
from datetime import datetime

from monitor.cluster import ClusterAdapter
from monitor.models import Snapshot

log = logging.getLogger(__name__)


def take_snapshot(adapter: ClusterAdapter, now: datetime) -> Snapshot:
    """Policies of every tier, namespaces with labels, running pods (labels, IP, named ports, node) and
    Services, read one kind after the other (the API offers no cross-kind transaction; a change between two
    lists shows up in the next run's snapshot)."""
    namespaces = adapter.list_namespaces()
    policies = adapter.list_network_policies()
    admin = adapter.list_admin_policies()
    pods = adapter.list_pods()
    services = adapter.list_services()
    snapshot = Snapshot.build(namespaces, pods, services, policies, admin)
    log.info("snapshot of %s at %s: %d namespaces, %d pods, %d services, %d policies, %d admin policies",
             adapter.server, now.isoformat(), len(snapshot.namespaces), len(snapshot.pods),
             len(snapshot.services), len(snapshot.policies), len(snapshot.admin_policies))
    return snapshot

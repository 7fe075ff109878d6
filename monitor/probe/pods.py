"""What marks a probe pod, and what the cluster adapter reports of one: plain data, no kubernetes.

The labels netpol-drift puts on its probe pods and run Leases (the adapter's watches leave probe pods out by
PROBE_LABEL, the runner's sweep finds a run's pods by RUN_LABEL), ProbePodState (one probe pod as the adapter
reads it) and RunLease (a run's heartbeat). They live here, not in monitor/cluster.py, so that the probe runner
and monitor/run.py (and every command that imports them) do not load the kubernetes client: only the adapter
handed in at run time does.
This module must not import anything but the standard library: no kubernetes, no other module of ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

PROBE_LABEL = "netpol-drift.io/probe"
RUN_LABEL = "netpol-drift.io/run"
OWNER_LABEL = "netpol-drift.io/owner"  # who created a probe pod (host and process): for people, not decisions
RUN_LEASE_LABEL = "netpol-drift.io/run-lease"  # marks the Leases that say a run's probe pods are still in use


@dataclass(frozen=True, slots=True)
class ProbePodState:
    """What the probe runner needs to know of one of its pods."""

    namespace: str
    name: str
    phase: str  # Pending, Running, Succeeded, Failed, Unknown, or Deleted when a watch saw it go
    node: str | None = None
    unschedulable: str | None = None  # PodScheduled=False: the scheduler's message
    waiting_reason: str | None = None  # e.g. ErrImagePull, CreateContainerConfigError
    exit_code: int | None = None
    termination_message: str | None = None
    termination_reason: str | None = None
    deleting: bool = False
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed") or self.exit_code is not None


@dataclass(frozen=True, slots=True)
class RunLease:
    """A run's heartbeat: while it is fresh, the run's probe pods are in use and no sweep takes them."""

    run: str
    holder: str
    renewed_at: datetime | None
    duration_seconds: int

    @property
    def lapses_at(self) -> datetime | None:
        """When the run counts as gone unless renewed before (None: it never was renewed, gone already)."""
        return None if self.renewed_at is None else self.renewed_at + timedelta(seconds=self.duration_seconds)

    def alive(self, now: datetime) -> bool:
        return self.lapses_at is not None and now < self.lapses_at

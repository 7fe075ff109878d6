"""The project's own error classes.

Every error a user can cause (bad suite, config, manifests, an unreachable API or database) is one of these,
and its str() is the one line the CLI prints before exiting 2. This module must not import anything heavy.
"""

from __future__ import annotations


class NetpolDriftError(Exception):
    """Base class: anything the CLI reports as one line and exit code 2."""

    def __str__(self) -> str:
        # One line whatever the input held: a name or a server message with a newline must not split it.
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


class InputError(NetpolDriftError):
    """Invalid user input, located as precisely as we can: file, object, field."""

    def __init__(self, message: str, *, file: str | None = None, obj: str | None = None,
                 field: str | None = None) -> None:
        self.message = message
        self.file = file
        self.obj = obj
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where = [p for p in (self.file, self.obj, self.field) if p]
        return ": ".join([*where, self.message])

    def located(self, *, file: str | None = None, obj: str | None = None) -> InputError:
        """The same error with the outer location filled in where the raiser did not know it."""
        return InputError(self.message, file=self.file or file, obj=self.obj or obj, field=self.field)


def syntax_error(e: Exception, language: str, *, file: str | None = None, obj: str | None = None) -> InputError:
    """A JSON or YAML parser's error as our one line: `not valid YAML: <problem> (line L, column C)`.

    Every reader of a user's file (manifests, suite, config, bundles, snapshots) reports syntax this way, so
    the position is always 1-based and the message never spans lines. Duck-typed: PyYAML's marked errors
    (problem, problem_mark) and json.JSONDecodeError (msg, lineno, colno); nothing is imported here.
    """
    mark = getattr(e, "problem_mark", None)
    if mark is not None:
        where = f" (line {mark.line + 1}, column {mark.column + 1})"
    elif isinstance(getattr(e, "lineno", None), int) and isinstance(getattr(e, "colno", None), int):
        where = f" (line {e.lineno}, column {e.colno})"
    else:
        where = ""
    problem = getattr(e, "problem", None) or getattr(e, "msg", None) or next(iter(str(e).splitlines()), "")
    return InputError(f"not valid {language}: {problem or type(e).__name__}{where}", file=file, obj=obj)


class ClusterError(NetpolDriftError):
    """The Kubernetes API could not be reached or refused a call."""


# The cluster adapter's errors (monitor/cluster.py raises them): here so that whoever catches one, such as the
# probe runner, need not load the kubernetes client to name it.
class ClusterConfigError(ClusterError):
    """No usable kubeconfig, context or in-cluster service account."""


class ClusterUnavailableError(ClusterError):
    """The API server could not be reached or kept failing after the retries."""


class ClusterThrottledError(ClusterUnavailableError):
    """The API server kept answering 429 (API Priority and Fairness rejected the call, or the monitor's
    level is full): the request was not carried out, a later try may work."""


class ClusterUnreachableError(ClusterUnavailableError):
    """No answer at all: the connection was refused or broke (the API server is down or restarting), as opposed
    to an answer that came late or said "try again" (429, 5xx). Every watch of every client, the CNI agents'
    too, breaks the same way: `serve` holds its judgement until they have had time to re-sync."""


class ClusterForbiddenError(ClusterError):
    """Authentication or RBAC refused the call: the monitor's ClusterRole lacks a right."""


class ClusterNotFoundError(ClusterError):
    """The object (or its whole API) does not exist."""


class ClusterConflictError(ClusterError):
    """The object already exists (a create that a retry repeated, or a leftover with the same name)."""


class ClusterRejectedError(ClusterError):
    """The API server refused the request itself (422 invalid, 400 bad request...)."""


class StoreError(NetpolDriftError):
    """The database could not be reached, or holds something we cannot read."""


class StoreUnavailableError(StoreError):
    """The database is unreachable, went away mid-call or is locked by another writer: a later try may work
    (the service holds the run's result and tries again)."""


class ProbeError(NetpolDriftError):
    """A probe pod could not be run or its result could not be read."""


class AlertError(NetpolDriftError):
    """Slack refused or could not be reached; the alert stays queued. `retry_after`: the seconds Slack asked
    to wait (a 429's Retry-After) before the next try, else 0."""

    retry_after: float = 0.0

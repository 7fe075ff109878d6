"""Settings: one frozen object read once from the config file and NETPOL_DRIFT_* environment variables.

The file is YAML with the sections below; every key is documented in config/netpol-drift.yaml. Unknown keys
and wrongly typed values are errors naming file and key. Environment variables override the file:
NETPOL_DRIFT_<SECTION>_<KEY> (e.g. NETPOL_DRIFT_STORE_URL). Secrets (Slack token and webhook, database
password) are accepted only from the environment and never appear in `describe()`.
The prefix is shared with other software's habits (wrapper scripts, CI), so only what names one of our sections
or top-level keys is ours: an unknown key there is an error (NETPOL_DRIFT_STORE_URI), and so is a near miss of
a section name (NETPOL_DRIFT_STOR_URL); any other NETPOL_DRIFT_* variable is not a setting, is ignored, and is
named in a warning.
This module must not read settings anywhere else than `load_settings`, nor keep any global state.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from monitor.errors import InputError, syntax_error
from monitor.models import DEFAULT_POD_CIDRS

ENV_PREFIX = "NETPOL_DRIFT_"
# Variables of the product that are not settings: the probe agent's inputs inside probe pods.
NOT_SETTINGS_ENV = frozenset({"NETPOL_DRIFT_PROBE_TARGETS", "NETPOL_DRIFT_RESULT_FILE"})
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterSettings:
    name: str = "default"
    kubeconfig: str | None = None  # None: in-cluster config when available, else ~/.kube/config
    context: str | None = None
    request_timeout_seconds: float = 10.0
    retries: int = 3
    # Offline address model: where a pod whose manifest gives no IP is assumed to be (first: primary family).
    pod_cidrs: tuple[str, ...] = DEFAULT_POD_CIDRS


@dataclass(frozen=True)
class ProbeSettings:
    image: str = "netpol-drift:0.1.0"
    namespace: str = "netpol-drift"  # where the monitor runs; this Namespace owns the probe pods
    timeout_seconds: float = 3.0
    concurrency: int = 10
    run_deadline_seconds: int = 300
    per_node: bool = False
    refused_means: str = "deny"  # TCP and SCTP: allow | deny | unknown: REJECTing CNIs make refused mean blocked
    udp_refused_means: str = "deny"  # UDP apart: an ICMP port unreachable from in between (a REJECT)
    tcp_reset_means: str = "skipped"  # a TCP refusal by a reset, not ICMP: no listener (skipped) | deny | allow
    settle_seconds: float = 2.0  # between the probe agent's passes (a fresh pod races its CNI rules)
    lease_seconds: int = 60  # a run's Lease lapses this long after its last renewal: its probe pods are then swept


@dataclass(frozen=True)
class StoreSettings:
    url: str = "sqlite:///netpol-drift.db"
    retention_days: int = 90


@dataclass(frozen=True)
class DriftSettings:
    confirmations: int = 1  # re-probes of a changed case before it becomes drift
    auto_known_good: bool = True  # a run with no violations becomes the new known-good baseline
    # After the API server was unreachable (serve): runs are history only until this long after it answers again,
    # while the CNI agents re-sync: a client-go informer waits out its backoff (up to 30 s, jittered to 60 s) before
    # it watches again, and once more before it re-lists when its version is gone: up to 120 s.
    hold_after_api_outage_seconds: float = 120.0


@dataclass(frozen=True)
class ScheduleSettings:
    interval_seconds: int = 300
    jitter_seconds: int = 30  # each scheduled run starts up to this much later: replicas of many clusters spread
    debounce_seconds: float = 3.0  # a change triggers a run after this quiet period...
    debounce_max_seconds: float = 30.0  # ...or this long after the first change, however busy the cluster is
    shutdown_grace_seconds: float = 20.0  # SIGTERM: a run may finish within this, else it is aborted
    reload_check_seconds: float = 5.0  # how often the config and suite files are checked for a change
    watch_timeout_seconds: int = 300  # one watch request lasts this long, then resumes from its resourceVersion


@dataclass(frozen=True)
class LeaderSettings:
    enabled: bool = True  # false: this replica probes without a Lease (one replica only!)
    lease_name: str = "netpol-drift"  # a coordination.k8s.io/v1 Lease in probe.namespace
    lease_seconds: float = 15.0  # client-go's defaults: lease duration, renew deadline, retry period
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0


@dataclass(frozen=True)
class SlackSettings:
    channel: str | None = None
    base_url: str | None = None  # None: Slack's own API; tests point this at a local stand-in


@dataclass(frozen=True)
class AlertSettings:
    on_blocked_mode_change: bool = False  # refused <-> timeout of a blocked flow: history only unless true
    flap_opens: int = 3  # a flow that opens this often within flap_window_seconds is flapping (0: never)
    flap_window_seconds: int = 3600
    flap_quiet_runs: int = 5  # a flapping flow alerts again after this many runs without a change
    retry_max_seconds: int = 600  # ceiling of the outbox backoff between delivery attempts


@dataclass(frozen=True)
class WebSettings:
    listen: str = "0.0.0.0:8080"
    external_url: str | None = None  # how people reach the dashboard; alerts link to runs under it
    dashboard: bool = True  # `serve` also serves the dashboard pages and /api/ on web.listen
    trusted_proxy_header: str | None = None  # a request carrying this header (set by an auth proxy) may read


@dataclass(frozen=True)
class ReportSettings:
    policy_reports: bool = False  # serve: publish each run as wgpolicyk8s.io/v1alpha2 PolicyReports
    name: str = "netpol-drift"  # the name of every PolicyReport and of the ClusterPolicyReport


@dataclass(frozen=True)
class Secrets:
    """Only ever from the environment; repr hides the values so that logging Settings never leaks them."""

    slack_token: str | None = field(default=None, repr=False)
    slack_webhook_url: str | None = field(default=None, repr=False)
    database_password: str | None = field(default=None, repr=False)
    web_token: str | None = field(default=None, repr=False)  # the dashboard's bearer token


@dataclass(frozen=True)
class Settings:
    cluster: ClusterSettings = ClusterSettings()
    probe: ProbeSettings = ProbeSettings()
    store: StoreSettings = StoreSettings()
    drift: DriftSettings = DriftSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    slack: SlackSettings = SlackSettings()
    alert: AlertSettings = AlertSettings()
    web: WebSettings = WebSettings()
    leader: LeaderSettings = LeaderSettings()
    report: ReportSettings = ReportSettings()
    suite: str | None = None  # path of the suite file
    log_level: str = "INFO"
    secrets: Secrets = Secrets()

    def describe(self) -> list[str]:
        """`key = value` lines for the start-up log, secrets shown only as set/unset."""
        lines = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "secrets":
                lines += [f"secrets.{s.name} = {'<set>' if getattr(value, s.name) else '<unset>'}"
                          for s in dataclasses.fields(value)]
            elif dataclasses.is_dataclass(value):
                lines += [f"{f.name}.{s.name} = {getattr(value, s.name)!r}" for s in dataclasses.fields(value)]
            else:
                lines.append(f"{f.name} = {value!r}")
        return lines


_SECRET_ENV = {
    "slack_token": "SLACK_TOKEN",
    "slack_webhook_url": "SLACK_WEBHOOK_URL",
    "database_password": "DATABASE_PASSWORD",
    "web_token": "WEB_TOKEN",
}
_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               tuple: "a list of CIDRs"}
_CHOICES = {("probe", "refused_means"): ("allow", "deny", "unknown"),
            ("probe", "udp_refused_means"): ("allow", "deny", "unknown"),
            ("probe", "tcp_reset_means"): ("skipped", "deny", "allow"),
            (None, "log_level"): ("DEBUG", "INFO", "WARNING", "ERROR")}
# Zero would mean "never" or "busy loop" here, neither of which anyone wants.
_POSITIVE = {("schedule", "interval_seconds"), ("schedule", "reload_check_seconds"),
             ("schedule", "watch_timeout_seconds"), ("leader", "lease_seconds"),
             ("leader", "renew_deadline_seconds"), ("leader", "retry_seconds"), ("probe", "run_deadline_seconds")}


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Reads the file (if any) then applies the environment. Raises InputError on any bad key or value."""
    env = os.environ if env is None else env
    source = str(path) if path else "<defaults>"
    raw: dict = {}
    if path:
        import yaml  # local: the probe agent imports settings-free code paths and must start fast

        from monitor.yamlload import safe_load

        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot read config: {e.strerror}", file=source) from e
        try:
            raw = safe_load(text) or {}
        except yaml.YAMLError as e:
            raise syntax_error(e, "YAML", file=source) from e
        if not isinstance(raw, dict):
            raise InputError("the config must be a mapping of sections", file=source)
    for key in ("secrets", "slack_token", "database_password"):
        if key in raw:
            raise InputError("secrets are read only from the environment (NETPOL_DRIFT_*)", file=source,
                             field=key)
    if isinstance(raw.get("web"), dict) and {"auth_token", "token"} & raw["web"].keys():
        raise InputError("secrets are read only from the environment (NETPOL_DRIFT_WEB_TOKEN)", file=source,
                         field="web.auth_token" if "auth_token" in raw["web"] else "web.token")
    values = _build(Settings, raw, source, prefix="")
    values = _apply_env(values, env)
    _check_relations(values, source)
    secrets = Secrets(**{k: env.get(ENV_PREFIX + v) or None for k, v in _SECRET_ENV.items()})
    return dataclasses.replace(values, secrets=secrets)


def _build(cls: type, raw: Mapping, source: str, prefix: str):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name != "secrets"}
    for key in raw:
        if key not in known:
            raise InputError(f"unknown key (known: {', '.join(sorted(known))})", file=source,
                             field=prefix + str(key))
    kwargs = {}
    for name in known:
        if name not in raw:
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            section = raw[name] or {}
            if not isinstance(section, dict):
                raise InputError("must be a mapping", file=source, field=prefix + name)
            kwargs[name] = _build(hint, section, source, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(raw[name], hint, source, prefix + name)
    return cls(**kwargs)


def _coerce(value, hint, source: str, key: str):
    if typing.get_origin(hint) is tuple:
        return parse_cidrs(value, source, key)
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    if value is None:
        if optional:
            return None
        raise InputError(f"must be {_TYPE_NAMES[base]}, not empty", file=source, field=key)
    try:
        if base is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                value = value.lower() in ("true", "1", "yes")
            if not isinstance(value, bool):
                raise ValueError
        elif base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            value = int(value)
        elif base is float:
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
        elif base is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            value = str(value)
    except (TypeError, ValueError):
        raise InputError(f"must be {_TYPE_NAMES[base]}, got {value!r}", file=source, field=key) from None
    section, _, name = key.rpartition(".")
    choices = _CHOICES.get((section or None, name))
    if choices and value not in choices:
        raise InputError(f"must be one of {', '.join(choices)}, got {value!r}", file=source, field=key)
    if base in (int, float) and value < 0:
        raise InputError(f"must not be negative, got {value!r}", file=source, field=key)
    if (section, name) in _POSITIVE and value <= 0:
        raise InputError(f"must be more than 0, got {value!r}", file=source, field=key)
    if (section, name) == ("web", "listen"):
        parse_listen(value, source)
    if (section, name) == ("web", "external_url"):
        _check_external_url(value, source)
    if (section, name) == ("web", "trusted_proxy_header") and not _HEADER_NAME.fullmatch(value):
        raise InputError(f"must be an HTTP header name (letters, digits, '-'), got {value!r}", file=source,
                         field=key)
    return value


def parse_cidrs(value, source: str, key: str) -> tuple[str, ...]:
    """A non-empty list of CIDRs: a YAML list, or comma-separated text (environment, command line)."""
    import ipaddress

    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise InputError(f"must be a non-empty list of CIDRs, got {value!r}", file=source, field=key)
    cidrs = []
    for item in items:
        try:
            cidrs.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError:
            raise InputError(f"invalid CIDR {item!r}", file=source, field=key) from None
    return tuple(cidrs)


_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def _check_external_url(value: str, source: str) -> None:
    """Alerts link to `<external_url>/runs/<id>`: it must be an absolute http(s) URL with no query."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InputError(f"must be an http:// or https:// URL without query or fragment, got {value!r}",
                         file=source, field="web.external_url")


def parse_listen(value: str, source: str = "<settings>") -> tuple[str, int]:
    """web.listen as (host, port): `HOST:PORT`, `:PORT` (every address) or `[IPv6]:PORT`."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"must be HOST:PORT with a port from 1 to 65535, got {value!r}", file=source,
                         field="web.listen")
    return host.strip("[]") or "0.0.0.0", int(port)


def _check_relations(settings: Settings, source: str) -> None:
    """Rules between two settings (one value alone cannot break them)."""
    lead, sched = settings.leader, settings.schedule
    if not lead.retry_seconds < lead.renew_deadline_seconds < lead.lease_seconds:
        # A leader must give up (renew deadline) before the others may take over (lease), and retry in between.
        raise InputError(f"must be less than leader.lease_seconds ({lead.lease_seconds:g}) and more than "
                         f"leader.retry_seconds ({lead.retry_seconds:g}), got {lead.renew_deadline_seconds:g}",
                         file=source, field="leader.renew_deadline_seconds")
    if sched.debounce_max_seconds < sched.debounce_seconds:
        raise InputError(f"must not be less than schedule.debounce_seconds ({sched.debounce_seconds:g}), "
                         f"got {sched.debounce_max_seconds:g}", file=source, field="schedule.debounce_max_seconds")


def _apply_env(settings: Settings, env: Mapping[str, str]) -> Settings:
    secret_names = {ENV_PREFIX + v for v in _SECRET_ENV.values()}
    updates: dict = {}
    for var, text in sorted(env.items()):
        if not var.startswith(ENV_PREFIX) or var in secret_names or var in NOT_SETTINGS_ENV:
            continue
        rest = var[len(ENV_PREFIX):].lower()
        target = _env_target(settings, rest)
        if target is None:
            _unknown_env(settings, var, rest)
            continue
        section, name = target
        if section:
            hint = typing.get_type_hints(type(getattr(settings, section)))[name]
            updates.setdefault(section, {})[name] = _coerce(text, hint, "environment", f"{section}.{name}")
        else:
            updates[name] = _coerce(text, typing.get_type_hints(Settings)[name], "environment", name)
    for section, fields_ in list(updates.items()):
        if isinstance(fields_, dict):
            updates[section] = dataclasses.replace(getattr(settings, section), **fields_)
    return dataclasses.replace(settings, **updates)


def _env_names(settings: Settings) -> dict[str, list[str]]:
    """Every variable we read, by the first word after the prefix (a section, or a top-level key's)."""
    names: dict[str, list[str]] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name == "secrets":
            continue
        subs = [f"{f.name}_{s.name}" for s in dataclasses.fields(value)] if dataclasses.is_dataclass(value) \
            else [f.name]
        names.setdefault(f.name.split("_")[0], []).extend(subs)
    for env_name in _SECRET_ENV.values():
        names.setdefault(env_name.split("_")[0].lower(), []).append(env_name.lower())
    return {word: sorted(ENV_PREFIX + n.upper() for n in subs) for word, subs in names.items()}


def _unknown_env(settings: Settings, var: str, rest: str) -> None:
    """Raises for a variable in one of our sections (or a near miss of one); logs and ignores the others."""
    names = _env_names(settings)
    word = rest.split("_")[0]
    if word in names:
        raise InputError(f"unknown setting (known: {', '.join(names[word])})", file="environment", field=var)
    close = difflib.get_close_matches(word, list(names), n=1, cutoff=0.75)
    if close:
        raise InputError(f"unknown setting (did you mean one of {', '.join(names[close[0]])}?)",
                         file="environment", field=var)
    log.warning("ignoring environment variable %s: not a netpol-drift setting (no section %r)", var, word)


def _env_target(settings: Settings, rest: str) -> tuple[str | None, str] | None:
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name == "secrets":
            continue
        if dataclasses.is_dataclass(value):
            for sub in dataclasses.fields(value):
                if rest == f"{f.name}_{sub.name}":
                    return f.name, sub.name
        elif rest == f.name:
            return None, f.name
    return None

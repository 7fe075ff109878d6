"""`up`, `down` and `status` of the lab: etcd, kube-apiserver, kube-controller-manager, the two node namespaces,
the node agent, and kube-proxy and kube-router on each node.

Job: bring the whole lab up in order (printing progress), tear down every process, namespace, link, route
and file it made (idempotently), and say what runs. Must not: touch the root namespace's firewall, bind
anything outside loopback / the lab's own links, or leave anything behind after `down`.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import config as C
from . import netns, procs

# kube-proxy and kube-router run once per node (as their DaemonSets would), named <component>-<node>.
NODE_COMPONENTS = ("kube-proxy", "kube-router")
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "agent",
              *(node.proc(c) for node in C.NODES for c in NODE_COMPONENTS))

# Static tokens: name -> (user, uid, groups). Each gets pki/<name>.token and <name>.kubeconfig in the state dir.
IDENTITIES = {
    "admin": (C.ADMIN_USER, "lab-admin", "system:masters"),
    "kube-router": ("kube-router", "kube-router", "system:masters"),
    "monitor": (C.MONITOR_USER, "netpol-drift-sa",
                f"system:serviceaccounts,system:serviceaccounts:{C.MONITOR_NAMESPACE}"),
    # The API server's bootstrap RBAC binds these user names to their own least-privilege ClusterRoles.
    "kube-controller-manager": ("system:kube-controller-manager", "kube-controller-manager", ""),
    "kube-proxy": ("system:kube-proxy", "kube-proxy", ""),
}


def say(msg: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class LabError(RuntimeError):
    pass


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veth links, iptables inside the node "
                       "namespace); run as root, e.g. `sudo make lab-up`")


def _missing_binaries() -> list[str]:
    return [str(C.binary(n)) for n in C.BINARIES if not C.binary(n).exists()]


# ------------------------------------------------------------------------------------------------- credentials
def _credentials(p: C.Paths) -> None:
    p.pki.mkdir(parents=True, exist_ok=True)
    os.chmod(p.pki, 0o700)
    if not p.sa_key.exists():
        subprocess.run(["openssl", "genrsa", "-out", str(p.sa_key), "2048"], check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(p.sa_key), "-pubout", "-out", str(p.sa_pub)],
                       check=True, capture_output=True)
    if not p.tokens.exists():
        lines = []
        for name, (user, uid, groups) in IDENTITIES.items():
            token = secrets.token_hex(24)
            p.token(name).write_text(token)
            os.chmod(p.token(name), 0o600)
            lines.append(f"{token},{user},{uid}" + (f',"{groups}"' if groups else ""))
        p.tokens.write_text("\n".join(lines) + "\n")
        os.chmod(p.tokens, 0o600)


def _ca_file(p: C.Paths) -> Path:
    return p.cert_dir / "apiserver.crt"


def _write_kubeconfig(path: Path, user: str, token: str, p: C.Paths) -> None:
    ca = base64.b64encode(_ca_file(p).read_bytes()).decode()
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": C.APISERVER_URL, "certificate-authority-data": ca}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": user}}],
    }
    import yaml  # only here: `down` and `status` must work with a bare python3 (make lab-down without venv)

    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    os.chmod(path, 0o600)


# ------------------------------------------------------------------------------------------------------ probes
def _http_ok(url: str, token: str | None = None, ca: Path | None = None, timeout: float = 2.0) -> bool:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    ctx = None
    if url.startswith("https"):
        ctx = ssl.create_default_context(cafile=str(ca)) if ca and ca.exists() else ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def _wait(what: str, fn, timeout: float, proc: str | None = None, p: C.Paths = C.PATHS) -> float:
    t0 = time.monotonic()
    while not fn():
        if proc and procs.pid_of(proc, p) is None:
            tail = _tail(p.log(proc))
            raise LabError(f"{proc} exited while waiting for {what}; last lines of {p.log(proc)}:\n{tail}")
        if time.monotonic() - t0 > timeout:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}"
                           + (f"; last lines of {p.log(proc)}:\n{_tail(p.log(proc))}" if proc else ""))
        time.sleep(0.2)
    return time.monotonic() - t0


def _tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def apiserver_ready(p: C.Paths = C.PATHS) -> bool:
    token = p.admin_token.read_text() if p.admin_token.exists() else None
    return _http_ok(f"{C.APISERVER_URL}/readyz", token, _ca_file(p))


def node_ready(p: C.Paths = C.PATHS, name: str | None = None) -> bool:
    """The named node (default: every lab node) is registered and Ready."""
    try:
        from .rest import Rest

        api = Rest(p.admin_kubeconfig)
        nodes = [api.get(f"/api/v1/nodes/{n}") for n in ([name] if name else [n.name for n in C.NODES])]
    except Exception:
        return False
    return all(any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))
               for node in nodes)


def controllers_working(p: C.Paths = C.PATHS) -> bool:
    """kube-controller-manager's ServiceAccount and root-CA publisher controllers have done their first work
    (what pods need before they can be created and get their token)."""
    try:
        from .rest import Rest

        api = Rest(p.admin_kubeconfig)
        return (api.exists("/api/v1/namespaces/default/serviceaccounts/default")
                and api.exists("/api/v1/namespaces/default/configmaps/kube-root-ca.crt"))
    except Exception:
        return False


def kube_proxy_synced(node: C.LabNode = C.NODE) -> bool:
    """kube-proxy routes the `kubernetes` Service's ClusterIP to the API server in the node's namespace."""
    try:
        nat = netns.node_iptables("nat", node)
    except Exception:
        return False
    return f"-d {C.KUBERNETES_SERVICE_IP}/32" in nat and f"--to-destination {C.ROOT_IP}:{C.APISERVER_PORT}" in nat


def layout(p: C.Paths = C.PATHS) -> str:
    """The LAYOUT of the lab in the state dir ("1": the first one, which wrote no layout file)."""
    try:
        return p.layout.read_text().strip()
    except OSError:
        return "1"


def kube_router_synced(node: C.LabNode = C.NODE) -> bool:
    """kube-router has installed its top-level chains in the node's namespace."""
    try:
        return "KUBE-ROUTER-FORWARD" in netns.node_iptables(node=node)
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------------------- up
def up(p: C.Paths = C.PATHS) -> bool:
    """Brings the lab up; True when it started it from nothing (False: it ran, or was only repaired)."""
    require_root()
    t_start = time.monotonic()
    missing = _missing_binaries()
    if missing:
        raise LabError("lab binaries missing (build them with `make lab-build` or `bash tests/lab/build.sh`): "
                       + ", ".join(missing))
    running = {n: procs.pid_of(n, p) for n in COMPONENTS}
    if p.root.exists() and layout(p) != C.LAYOUT:
        say(f"the lab in {p.root} has layout {layout(p)}, this checkout builds {C.LAYOUT}: rebuilding it")
        down(p)
        running = {n: None for n in COMPONENTS}
    if all(running.values()) and apiserver_ready(p) and node_ready(p):
        say(f"already up ({', '.join(f'{n}={pid}' for n, pid in running.items())})")
        return False
    nodes_present = all(netns.netns_exists(n.netns) for n in C.NODES)
    if running["etcd"] and running["kube-apiserver"] and nodes_present and apiserver_ready(p):
        # API server fine, another process died: restart just that, keeping everyone's pods.
        if not running["kube-controller-manager"]:
            say("kube-controller-manager not running: restarting it")
            start_controller_manager(p)
        if not running["agent"]:
            say("node agent not running: restarting it (it re-adopts the pods)")
            start_agent(p)
            _wait("every node Ready", lambda: node_ready(p), 30, "agent", p)
        missing = [(n, c) for n in C.NODES for c in NODE_COMPONENTS if not running[n.proc(c)]]
        if missing:
            say(", ".join(n.proc(c) for n, c in missing) + " not running: restarting")
            start_node_daemons(missing, p)
        say(f"up again in {time.monotonic() - t_start:.1f}s")
        return False
    if any(running.values()) or any(netns.netns_exists(n.netns) for n in C.NODES) or p.root.exists():
        say("a partial lab is present: tearing it down first")
        down(p)
    for d in (p.root, p.logs, p.pids, p.agent):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(p.root, 0o755)
    p.layout.write_text(C.LAYOUT + "\n")
    _credentials(p)

    for n in C.NODES:
        say(f"node {n.name}: namespace {n.netns}, link {n.root_veth} {n.root_ip} <-> {n.node_veth} {n.ip}, "
            f"pod CIDR {n.pod_cidr}")
    a, b = C.NODES
    say(f"node link {a.netns}/{a.peer_veth} {a.peer_ip} <-> {b.netns}/{b.peer_veth} {b.peer_ip}")
    netns.nodes_up()

    start_etcd(p)
    start_apiserver(p)

    for name, (user, _, _) in IDENTITIES.items():
        _write_kubeconfig(p.kubeconfig(name), user, p.token(name).read_text(), p)

    from . import kube

    rbac = C.REPO / "deploy" / "rbac.yaml"
    from .rest import Rest

    kube.wait_for("RBAC bootstrap", lambda: Rest(p.admin_kubeconfig).get("/api/v1/namespaces"), 30)
    kube.apply(rbac.read_text(), kubeconfig=p.admin_kubeconfig)
    say(f"applied {rbac.relative_to(C.REPO)} (monitor identity {C.MONITOR_USER})")

    start_controller_manager(p)

    say("node agent")
    start_agent(p)
    dt = _wait("every node Ready", lambda: node_ready(p), 30, "agent", p)
    say(f"nodes {', '.join(n.name for n in C.NODES)} Ready ({dt:.1f}s)")

    start_node_daemons([(n, c) for n in C.NODES for c in NODE_COMPONENTS], p)
    say(f"lab up in {time.monotonic() - t_start:.1f}s; admin kubeconfig {p.admin_kubeconfig}, "
        f"monitor kubeconfig {p.monitor_kubeconfig}")
    return True


def start_etcd(p: C.Paths = C.PATHS) -> None:
    """Starts etcd on its data dir (also used by tests that restart it: the data is kept)."""
    say(f"etcd {C.ETCD_VERSION} on 127.0.0.1:{C.ETCD_CLIENT_PORT}")
    procs.start("etcd", [
        str(C.binary("etcd")), "--name", "lab", "--data-dir", str(p.etcd_data),
        "--listen-client-urls", f"http://127.0.0.1:{C.ETCD_CLIENT_PORT}",
        "--advertise-client-urls", f"http://127.0.0.1:{C.ETCD_CLIENT_PORT}",
        "--listen-peer-urls", f"http://127.0.0.1:{C.ETCD_PEER_PORT}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{C.ETCD_PEER_PORT}",
        "--initial-cluster", f"lab=http://127.0.0.1:{C.ETCD_PEER_PORT}",
        "--unsafe-no-fsync", "--log-level", "warn",
    ], paths=p)
    dt = _wait("etcd /health", lambda: _http_ok(f"http://127.0.0.1:{C.ETCD_CLIENT_PORT}/health"), 30, "etcd", p)
    say(f"etcd healthy ({dt:.1f}s)")


def start_apiserver(p: C.Paths = C.PATHS, extra_args: tuple[str, ...] = ()) -> None:
    """Starts kube-apiserver and waits for /readyz (also used by fault tests that stop and restart it;
    extra_args: more flags for that one start, e.g. a smaller request concurrency)."""
    say(f"kube-apiserver {C.K8S_VERSION} on {C.APISERVER_URL} (RBAC, static tokens)")
    p.cert_dir.mkdir(parents=True, exist_ok=True)
    procs.start("kube-apiserver", [
        str(C.binary("kube-apiserver")),
        f"--etcd-servers=http://127.0.0.1:{C.ETCD_CLIENT_PORT}",
        f"--bind-address={C.ROOT_IP}", f"--advertise-address={C.ROOT_IP}", f"--secure-port={C.APISERVER_PORT}",
        f"--cert-dir={p.cert_dir}",
        f"--service-account-issuer={C.SA_ISSUER}",
        f"--service-account-key-file={p.sa_pub}", f"--service-account-signing-key-file={p.sa_key}",
        # Default admission (ServiceAccount included: pods get their token volume) and the default `lease`
        # endpoint reconciler (the `kubernetes` Service's endpoints are this server).
        f"--service-cluster-ip-range={C.SERVICE_CIDR}",
        "--authorization-mode=RBAC", f"--token-auth-file={p.tokens}",
        "--anonymous-auth=false", "--profiling=false", "--v=1", *extra_args,
    ], paths=p)
    dt = _wait("kube-apiserver /readyz", lambda: apiserver_ready(p), 90, "kube-apiserver", p)
    say(f"kube-apiserver ready ({dt:.1f}s)")


def stop_component(name: str, p: C.Paths = C.PATHS) -> None:
    """Stops one lab process (SIGTERM, then SIGKILL): fault tests stop etcd or kube-apiserver mid-run and
    start them again with start_etcd/start_apiserver, which keep the state dir (data, certificates)."""
    pid = procs.pid_of(name, p)
    if pid:
        procs.stop([pid])
        say(f"stopped {name} (pid {pid})")


def start_controller_manager(p: C.Paths = C.PATHS) -> None:
    say(f"kube-controller-manager {C.K8S_VERSION} (all default controllers, no serving port)")
    procs.start("kube-controller-manager", [
        str(C.binary("kube-controller-manager")), f"--kubeconfig={p.kubeconfig('kube-controller-manager')}",
        "--leader-elect=false", "--use-service-account-credentials",
        "--secure-port=0",  # nothing to serve: readiness is seen in the API (below)
        f"--service-account-private-key-file={p.sa_key}", f"--root-ca-file={_ca_file(p)}",
        f"--service-cluster-ip-range={C.SERVICE_CIDR}", f"--cluster-cidr={C.CLUSTER_CIDR}",
        "--allocate-node-cidrs=false",  # the agent registers each node with its podCIDR
        "--controllers=*", "--profiling=false", "--v=1",
    ], paths=p)
    dt = _wait("the default ServiceAccount and kube-root-ca.crt", lambda: controllers_working(p), 60,
               "kube-controller-manager", p)
    say(f"kube-controller-manager working ({dt:.1f}s)")


def start_node_daemons(which: list[tuple[C.LabNode, str]], p: C.Paths = C.PATHS) -> None:
    """Starts kube-proxy/kube-router on the given nodes all at once, then waits for each (in parallel they cost
    about what one node's pair costs: most of their start is waiting for the API and their first sync)."""
    for node, component in which:
        (start_kube_proxy if component == "kube-proxy" else start_kube_router)(node, p, wait=False)
    for node, component in which:
        wait_node_daemon(node, component, p)


def start_kube_proxy(node: C.LabNode = C.NODE, p: C.Paths = C.PATHS, wait: bool = True) -> None:
    say(f"kube-proxy {C.K8S_VERSION} in {node.netns} (iptables mode, node {node.name})")
    procs.start(node.proc("kube-proxy"), [
        "ip", "netns", "exec", node.netns, str(C.binary("kube-proxy")),
        f"--kubeconfig={p.kubeconfig('kube-proxy')}", f"--hostname-override={node.name}",
        "--proxy-mode=iptables", f"--cluster-cidr={C.CLUSTER_CIDR}",
        # 0 = leave the conntrack sysctls alone (nf_conntrack_max is not per namespace and not ours to raise).
        "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0",
        f"--healthz-bind-address={C.KUBE_PROXY_HEALTHZ}", f"--metrics-bind-address={C.KUBE_PROXY_METRICS}",
        "--profiling=false", "--v=1",
    ], paths=p)
    if wait:
        wait_node_daemon(node, "kube-proxy", p)


def start_kube_router(node: C.LabNode = C.NODE, p: C.Paths = C.PATHS, wait: bool = True) -> None:
    say(f"kube-router {C.KUBE_ROUTER_VERSION} in {node.netns} (firewall only, node {node.name})")
    procs.start(node.proc("kube-router"), [
        "ip", "netns", "exec", node.netns, str(C.binary("kube-router")),
        f"--kubeconfig={p.kubeconfig('kube-router')}", f"--hostname-override={node.name}",
        "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
        f"--health-port={C.KUBE_ROUTER_HEALTH_PORT}", "--metrics-port=0",
        f"--service-cluster-ip-range={C.SERVICE_CIDR}", "--v=1",
    ], env={"NODE_NAME": node.name}, paths=p)
    if wait:
        wait_node_daemon(node, "kube-router", p)


def wait_node_daemon(node: C.LabNode, component: str, p: C.Paths = C.PATHS) -> None:
    name = node.proc(component)
    if component == "kube-proxy":
        dt = _wait(f"{name} rules for the kubernetes Service ({C.KUBERNETES_SERVICE_IP})",
                   lambda: kube_proxy_synced(node), 60, name, p)
        say(f"{name} routing Services ({dt:.1f}s)")
    else:
        dt = _wait(f"{name} chains in {node.netns}", lambda: kube_router_synced(node), 60, name, p)
        say(f"{name} enforcing ({dt:.1f}s)")


def start_agent(p: C.Paths = C.PATHS) -> int:
    """Starts the node agent (also used by tests that restart it)."""
    return procs.start("agent", [str(C.PYTHON), "-m", "tests.lab.agent", "--kubeconfig", str(p.admin_kubeconfig)],
                       paths=p, cwd=C.REPO)


# -------------------------------------------------------------------------------------------------------- down
def _created_files(p: C.Paths) -> list[Path]:
    try:
        return [Path(line) for line in p.created_files.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def down(p: C.Paths = C.PATHS) -> None:
    require_root()
    # The agent first (so it stops realizing pods), then everything else that carries the lab's marker.
    agent = procs.pid_of("agent", p)
    if agent:
        procs.stop([agent])
        say(f"stopped agent (pid {agent})")
    found = procs.lab_processes(p)
    if found:
        procs.stop(sorted(found))
        say("stopped " + ", ".join(f"{name} (pid {pid})" for pid, name in sorted(found.items())))
    for ns in netns.pod_netns_list():
        netns.run(["ip", "netns", "del", ns], check=False)
        say(f"removed pod netns {ns}")
    for item in netns.nodes_down():
        say(f"removed {item}")
    for f in reversed(_created_files(p)):  # children first: a created dir goes once it is empty again
        if f.is_file() and not f.is_symlink() and f.stat().st_size == 0:
            f.unlink()
            say(f"removed {f}")
        elif f.is_dir() and not f.is_symlink() and not any(f.iterdir()):
            f.rmdir()
            say(f"removed {f}/")
    if p.root.exists():
        shutil.rmtree(p.root)
        say(f"removed {p.root}")
    say("lab down")


# ------------------------------------------------------------------------------------------------------ status
def status(p: C.Paths = C.PATHS) -> int:
    """Prints what runs; returns 0 when the whole lab is up, 1 when part of it is, 3 when nothing is."""
    rows = []
    for n in COMPONENTS:
        pid = procs.pid_of(n, p)
        rows.append((n, f"running (pid {pid})" if pid else "not running"))
    ok_api = apiserver_ready(p) if p.admin_token.exists() else False
    rows.append(("apiserver /readyz", "ok" if ok_api else "no"))
    for n in C.NODES:
        rows.append((f"node {n.name}", "Ready" if ok_api and node_ready(p, n.name) else "not ready"))
        rows.append((f"netns {n.netns}", "present" if netns.netns_exists(n.netns) else "absent"))
    pods = netns.pod_netns_list()
    rows.append(("pod namespaces", str(len(pods))))
    rows.append(("state dir", str(p.root) if p.root.exists() else "absent"))
    width = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    up_count = sum(1 for n in COMPONENTS if procs.pid_of(n, p))
    if up_count == len(COMPONENTS) and ok_api:
        return 0
    return 1 if up_count or pods or any(netns.netns_exists(n.netns) for n in C.NODES) else 3


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start the lab (no-op when it runs)")
    sub.add_parser("down", help="stop the lab and remove everything it made (idempotent)")
    sub.add_parser("status", help="say what runs (exit 0 up, 1 partly, 3 down)")
    kc = sub.add_parser("kubeconfig", help="print the path of a lab kubeconfig")
    kc.add_argument("--monitor", action="store_true", help="the monitor's ServiceAccount identity")
    kc.add_argument("--print", action="store_true", dest="show", help="print the content, not the path")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "up":
            up()
        elif a.cmd == "down":
            down()
        elif a.cmd == "status":
            return status()
        else:
            path = C.PATHS.monitor_kubeconfig if a.monitor else C.PATHS.admin_kubeconfig
            if not path.exists():
                print(f"lab not up: {path} missing", file=sys.stderr)
                return 1
            print(path.read_text() if a.show else path)
    except LabError as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1
    return 0



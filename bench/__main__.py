"""`python -m bench [NAME ...]`: run the named benchmarks (DEFAULT when none is named).

Each entry maps a name to the module whose main() runs it; add yours as one line. No benchmark logic here."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "matrix": "bench.matrix_vs_nca",  # matrix --format tsv vs network-config-analyzer; 10k-pod class matrix
    "npa": "bench.matrix_vs_npa",  # matrix --format tsv vs netpol-analyzer (binary from $NETPOL_ANALYZER)
    "probe-fanout": "bench.probe_fanout",  # needs root and the lab
    "scale": "bench.scale",  # matrix/check/diff at 10,000 pods, live snapshot, 100,000 pods
    "store-year": "bench.store_year",  # a year of 5-minute runs in SQLite: bytes per run, size, query times
    "serve-latency": "bench.serve_latency",  # needs root and the lab: policy apply -> stored drift run
    "serve-memory": "bench.serve_memory",  # needs root and the lab: RSS of serve over 100 runs of 1,000 cases
    "dashboard": "bench.dashboard",  # run page of 200 x 200 identities (server + Chromium), history of a year
    "alert-latency": "bench.alert_latency",  # needs root and the lab: policy apply -> Slack message
}
# Run when no name is given: the ones that need nothing but this checkout.
DEFAULT = ["matrix"]


def main(argv: list[str]) -> int:
    """`python -m bench [NAME ...]`, or `python -m bench NAME --option ...` to pass options to one benchmark."""
    if argv and argv[0] in BENCHMARKS and not all(a in BENCHMARKS for a in argv):
        return importlib.import_module(BENCHMARKS[argv[0]]).main(argv[1:]) or 0
    names = argv or DEFAULT
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})", file=sys.stderr)
        return 2
    rc = 0
    for name in names:
        rc |= importlib.import_module(BENCHMARKS[name]).main([]) or 0
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Lets `python -m monitor` behave like the `netpol-drift` console script; nothing else belongs here."""

from monitor.cli import main

raise SystemExit(main())

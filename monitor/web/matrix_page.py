"""`netpol-drift matrix --format html`: the dashboard's reachability grid as one self-contained file.

The page inlines the dashboard's own stylesheet and script (a CI artifact or a file attached to a review has
no server to fetch them from); cluster data goes through the same autoescaping templates as the dashboard.
This module must not import the store nor evaluate policies (the flows come in).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from markupsafe import Markup

from monitor.models import Snapshot
from monitor.web import views
from monitor.web.dashboard import HERE, environment


def render_matrix_html(snapshot: Snapshot, flows: Iterable[Any], *, source: str) -> str:
    # Markup only on our own two asset files, never on anything the manifests said.
    css = Markup((HERE / "static" / "dashboard.css").read_text(encoding="utf-8"))
    js = Markup((HERE / "static" / "dashboard.js").read_text(encoding="utf-8").replace("</", "<\\/"))
    return environment().get_template("matrix.html").render(d=views.offline_matrix_view(snapshot, flows),
                                                            source=source, css=css, js=js)

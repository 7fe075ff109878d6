# syntax=docker/dockerfile:1
# The netpol-drift image: `netpol-drift serve` by default, and the probe image (probe pods run
# `netpol-drift probe-agent` from this same image, probe.image). Build: `docker build -t netpol-drift:0.1.0 .`
#
# Two stages: the first builds wheels (netpol-drift and its dependencies, PostgreSQL driver included); the
# final one installs them from a bind mount (no wheel, pip cache or build tool left in a layer) on the same
# slim base and runs as a numeric non-root user, so `runAsNonRoot` can verify it. Nothing is written under /
# at run time: bytecode is compiled at install, HOME and TMPDIR point at /tmp (an emptyDir in the chart), the
# SQLite database lives on its own volume (/var/lib/netpol-drift), so `readOnlyRootFilesystem: true` works.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
# pyproject.toml's version (tests/test_image.py keeps them equal): the final stage installs exactly the wheel built.
ARG VERSION=0.1.0

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY monitor ./monitor
COPY alembic ./alembic
RUN pip wheel --wheel-dir /wheels ".[postgres]"

FROM ${PYTHON_IMAGE}
ARG VERSION
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    TMPDIR=/tmp
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "netpol-drift[postgres]==${VERSION}" \
    && mkdir -p /var/lib/netpol-drift && chown 65532:65532 /var/lib/netpol-drift
WORKDIR /var/lib/netpol-drift
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["netpol-drift"]
CMD ["serve", "--config", "/etc/netpol-drift/netpol-drift.yaml"]

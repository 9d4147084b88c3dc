# syntax=docker/dockerfile:1
#
# pumphouse container image.
#
#   docker build -t pumphouse .
#   docker run --rm -v "$PWD/pumphouse.yaml:/etc/pumphouse/pumphouse.yaml:ro" -p 9400:9400 pumphouse
#
# Stage 1 builds pumphouse's wheel and installs it, with its dependencies, into a virtual
# environment under /opt/pumphouse. Stage 2 copies only that environment into a slim
# Python image: no compiler, no build tools, no source tree.
#
# Your handlers and their dependencies (see docs/deploying.md):
#
#   FROM pumphouse
#   COPY requirements.txt /var/task/
#   RUN pip install --no-cache-dir -r /var/task/requirements.txt   # into /opt/pumphouse
#   COPY orders/ /var/task/orders/                                 # CodeUri: /var/task/orders
#
# or mount the code as a volume and point CodeUri at it.
#
# Handlers in other languages (README, "Handlers in other languages") need their runtime
# in the image. Node.js: the node binary, and the handler's directory with AWS's runtime
# interface client (aws-lambda-ric) in its node_modules, built in a stage that has a
# compiler (the client compiles a small C++ library; the handler's package.json approves
# its install scripts with "allowScripts"):
#
#   FROM node:20-bookworm AS node-handlers
#   RUN apt-get update && apt-get install -y --no-install-recommends cmake
#   COPY orders-node/ /var/task/orders-node/
#   RUN cd /var/task/orders-node && npm ci --omit=dev
#
#   FROM pumphouse
#   COPY --from=node-handlers /usr/local/bin/node /usr/local/bin/node
#   COPY --from=node-handlers /var/task/orders-node/ /var/task/orders-node/
#
# Both images are Debian bookworm, so node runs as built. A custom runtime
# (Runtime: provided.al2023) is its executable bootstrap, e.g. a Go or Rust binary built
# for Lambda; a shell bootstrap in the style of AWS's tutorial also needs curl
# (apt-get install curl in a FROM pumphouse image, as root):
#
#   COPY --chmod=755 build/bootstrap /var/task/orders-go/bootstrap

ARG PYTHON_VERSION=3.11

# --- build ----------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY pumphouse/ pumphouse/

# The wheel (the same one `pip wheel --no-deps .` builds outside the image), then a venv
# with the wheel and every dependency from PyPI's prebuilt wheels.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/pumphouse \
 && /opt/pumphouse/bin/pip install /wheels/pumphouse-*.whl \
 && /opt/pumphouse/bin/pumphouse --version

# --- runtime --------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm

ARG PUMPHOUSE_UID=10001

LABEL org.opencontainers.image.title="pumphouse" \
      org.opencontainers.image.description="Self-hosted AWS Lambda event source mappings" \
      org.opencontainers.image.licenses="Apache-2.0"

# A system user with a fixed numeric id (Kubernetes runAsNonRoot checks the number),
# the config directory, the code directory (/var/task, as in Lambda) and the state
# directory (SQLite checkpoints when no Redis is configured).
RUN groupadd --system --gid "${PUMPHOUSE_UID}" pumphouse \
 && useradd --system --uid "${PUMPHOUSE_UID}" --gid pumphouse \
      --home-dir /var/lib/pumphouse --no-create-home --shell /usr/sbin/nologin pumphouse \
 && mkdir -p /etc/pumphouse /var/task /var/lib/pumphouse \
 && chown pumphouse:pumphouse /var/lib/pumphouse

COPY --from=build /opt/pumphouse /opt/pumphouse

ENV PATH=/opt/pumphouse/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Relative state paths (the default sqlite:///./.pumphouse/state.db) land in the volume.
WORKDIR /var/lib/pumphouse
VOLUME ["/var/lib/pumphouse"]

USER ${PUMPHOUSE_UID}:${PUMPHOUSE_UID}

# /metrics, /healthz, /readyz, /mappings (Settings.MetricsAddress, default 0.0.0.0:9400)
EXPOSE 9400

# SIGTERM: stop polling, drain in-flight batches for Settings.ShutdownTimeoutSeconds,
# checkpoint, release leases, exit 0.
STOPSIGNAL SIGTERM

ENTRYPOINT ["pumphouse"]
CMD ["run", "-c", "/etc/pumphouse/pumphouse.yaml"]

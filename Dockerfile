# One image for every service of docker-compose.yml: the MLflow server, the Ray head and GPU workers,
# and the launcher (`amgt-study`). Build it with the commit recorded on every run:
#   docker compose build --build-arg GIT_SHA=$(git rev-parse HEAD)
FROM python:3.11-slim

ARG GIT_SHA=""
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
# Every node of a Ray cluster must run the same Ray; the dashboard (ray[default]) serves `ray job submit`.
ARG RAY_VERSION=2.60.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AMGT_GIT_SHA=${GIT_SHA} \
    AMGT_DATA_DIR=/data

# postgresql-client: pg_isready/psql for operators; tini: PID 1 that forwards signals (ray --block, mlflow).
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client tini \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# The heavy, rarely changing layer first (the Linux x86_64 wheels on PyPI carry CUDA).
RUN pip install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" "ray[default,tune]==${RAY_VERSION}"

COPY pyproject.toml README.md ./
COPY amgt ./amgt
COPY workers ./workers
COPY tracking ./tracking
COPY study ./study
RUN pip install . "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" "ray[default,tune]==${RAY_VERSION}" \
 && amgt-study --help > /dev/null \
 && mlflow --version \
 && ray --version

COPY studies ./studies

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["amgt-study", "--help"]

# syntax=docker/dockerfile:1
# pinnrun for GPU nodes. Build and run on a Docker host with the NVIDIA Container Toolkit:
#   docker build -t pinnrun .
#   docker run --rm --gpus all -v "$PWD/runs:/work" pinnrun problem=burgers weighting=uniform device=cuda
# Outputs (Hydra's outputs/, and MLflow's mlflow.db + mlartifacts/ when MLFLOW_TRACKING_URI is unset)
# go to /work; mount a volume there. Point runs at a tracking server with -e MLFLOW_TRACKING_URI=...
#
# The CUDA line is chosen by two build arguments that must match (torch bundles its own CUDA
# libraries, cuDNN included, so the image only needs the `base` flavour, not `cudnn-runtime`):
#   default: CUDA 13.0 (NVIDIA driver >= 580, GPUs sm_75 and newer)
#   older drivers or GPUs: --build-arg CUDA_IMAGE=nvidia/cuda:12.6.3-base-ubuntu24.04
#                          --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126
# A second target, `tracking-server`, is the MLflow server of compose.yaml (MLflow + psycopg2).

ARG CUDA_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.9.26

FROM ${UV_IMAGE} AS uv

# ---- builder: Python 3.11, torch, the dependencies, then pinnrun's wheel, all in /opt/venv ----
FROM ${CUDA_IMAGE} AS builder
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
COPY --from=uv /uv /usr/local/bin/uv
# A relocatable CPython build managed by uv (pinned by the uv version): the final stage copies it
# as is, so it needs no apt, no compiler and no pip.
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
RUN uv python install 3.11 \
    && uv venv --python 3.11 /opt/venv
ENV VIRTUAL_ENV=/opt/venv
# Layers from least to most often changed: torch, then pinnrun's dependencies, then its source.
RUN uv pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /src
COPY pyproject.toml README.md ./
RUN uv pip install -r pyproject.toml
COPY pinnrun ./pinnrun
COPY conf ./conf
RUN uv build --wheel --out-dir /dist \
    && uv pip install --no-deps /dist/pinnrun-*.whl

# ---- tracking-server: `mlflow server` with the PostgreSQL driver (used by compose.yaml) ----
FROM python:3.11.14-slim-bookworm AS tracking-server
ARG MLFLOW_VERSION=3.17.2
ARG PSYCOPG2_VERSION=2.9.13
RUN pip install --no-cache-dir "mlflow==${MLFLOW_VERSION}" "psycopg2-binary==${PSYCOPG2_VERSION}" \
    && useradd --create-home --uid 10001 --user-group mlflow \
    && mkdir -p /mlartifacts \
    && chown mlflow:mlflow /mlartifacts
USER 10001:10001
EXPOSE 5000
ENTRYPOINT ["mlflow", "server"]

# ---- runtime: the CUDA base, the copied interpreter and venv, a non-root user ----
FROM ${CUDA_IMAGE} AS runtime
COPY --from=builder /opt/python /opt/python
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH} \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    MPLBACKEND=Agg
RUN groupadd --gid 10001 pinnrun \
    && useradd --uid 10001 --gid pinnrun --create-home pinnrun \
    && mkdir -p /work/outputs \
    && chown -R pinnrun:pinnrun /work
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["pinnrun"]

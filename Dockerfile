# dflab image. CPU by default; for CUDA build with
#   docker build --build-arg BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                --build-arg TORCH_SPEC="torch==2.14.1 torchvision==0.29.1" -t dflab:cuda .
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ARG TORCH_SPEC="torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu"
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 NO_ALBUMENTATIONS_UPDATE=1 \
    MLFLOW_TRACKING_URI=sqlite:///mlruns/mlflow.db
RUN apt-get update && apt-get install -y --no-install-recommends \
        make git build-essential python3 python3-venv python3-dev libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /dflab
COPY setup.cfg pyproject.toml README.md Makefile ./
COPY src ./src
# The Makefile creates .venv and installs everything (the stamp makes later targets reuse it).
RUN make install PY=python3 TORCH_SPEC="${TORCH_SPEC}"
COPY . .
ENV PATH=/dflab/.venv/bin:$PATH
EXPOSE 5000
CMD ["make", "sweep"]

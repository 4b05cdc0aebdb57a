# The image of train-indexed-job.yaml: the published wheel (it carries its own libraries, and its CUDA
# module the CUDA runtime); nothing is compiled. The GPU driver comes from the node (NVIDIA container toolkit).
#   docker build -f trainer.Dockerfile -t registry.example.com/mlops-trainer:0.1.0 .
FROM python:3.11-slim-bookworm
# The distribution's own name: the bare name `mlops` on the public index is an unrelated package.
ARG MLOPS_PACKAGE=mlops-dolt==0.1.0
RUN python -m pip install --no-cache-dir "$MLOPS_PACKAGE" \
 && useradd --create-home --uid 10001 mlops
USER 10001
WORKDIR /home/mlops

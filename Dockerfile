# VGGish REST service (`vggish serve`), CPU only, as a non-root user. How to build and run it:
# docs/container.md. In short:
#   docker build --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index> -t vggish .
#   (or put torch-2.13.0+cpu-*.whl into wheels/ and: docker build -t vggish .)
#   docker run -p 8000:8000 -v vggish-data:/data -v "$PWD/weights:/app/weights" vggish
#   docker run -p 8000:8000 -e VGGISH_WEIGHTS=random vggish        (demo, meaningless numbers)
# The base is any Debian 12 image; python:3.11-slim brings its own Python, a bare Debian image
# (debian:bookworm-slim) gets Debian's python3. Packages go into a venv, /opt/venv, either way.
ARG BASE_IMAGE=python:3.11-slim

# ---- build: the venv, with torch's CPU build and the package; only /opt/venv leaves this stage.
FROM ${BASE_IMAGE} AS build
# torch's CPU build (a "+cpu" version, from PyTorch's CPU wheel index or from wheels/): the plain
# Linux x86_64 wheel carries CUDA (several GB). On arm64, PyPI's plain wheel is the CPU one:
# --build-arg TORCH_SPEC=torch==2.13.0
ARG TORCH_SPEC=torch==2.13.0+cpu
ARG TORCH_INDEX_URL=""
# Behind a TLS-intercepting proxy, pip needs its CA: --build-arg PIP_CERT=<a CA bundle inside the
# build>, e.g. with podman: -v /etc/ssl/certs/ca-certificates.crt:/run/ca.crt:ro --build-arg
# PIP_CERT=/run/ca.crt (make test-container does). Empty: pip's own CA bundle. This stage only.
ARG PIP_CERT=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DEBIAN_FRONTEND=noninteractive
RUN if ! python3 -m ensurepip --version >/dev/null 2>&1; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# wheels/ (kept in git with its README) may hold wheels for an offline or CPU-torch build.
COPY wheels/ /tmp/wheels/
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
    && if [ -z "$TORCH_INDEX_URL" ] && ! ls /tmp/wheels/torch-*.whl >/dev/null 2>&1; then \
        echo "no CPU torch: pass --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index> or put a torch wheel into wheels/ (docs/container.md)" >&2; \
        exit 1; \
    fi \
    && pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} --find-links /tmp/wheels "$TORCH_SPEC" \
    && python -W ignore -c "import torch; assert torch.version.cuda is None, 'a CUDA build of torch: ' + torch.__version__"
# Everything .dockerignore lets through; pip builds and installs the package from it (torch, already
# there, is kept). postgres: psycopg, for replicas sharing their heads (VGGISH_DATABASE_URL).
COPY . /src
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
    && pip install --find-links /tmp/wheels "/src[serve,onnx,postgres]" \
    && pip check \
    && rm -rf /src /tmp/wheels

# ---- the image
FROM ${BASE_IMAGE}
# ffmpeg decodes what libsndfile cannot (m4a/aac, alac, video containers); soundfile's wheel
# carries libsndfile itself. A bare Debian base gets python3 too (the venv's interpreter).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg \
        $(command -v python3 >/dev/null || echo python3) \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin vggish \
    && mkdir -p /app/weights /data \
    && chown vggish:vggish /app/weights /data
COPY --from=build /opt/venv /opt/venv

# VGGISH_DATA_DIR: the heads' database (heads.sqlite3), a volume owned by the user. /app/weights:
# the weights, mounted or fetched. OPENBLAS_NUM_THREADS=1: the decode threads run side by side,
# and NumPy's own BLAS threads on top of them would oversubscribe the cores.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VGGISH_HOST=0.0.0.0 \
    VGGISH_PORT=8000 \
    VGGISH_WEIGHTS=/app/weights/vggish.safetensors \
    VGGISH_DATA_DIR=/data \
    OPENBLAS_NUM_THREADS=1
WORKDIR /app
USER 10001:10001

# --build-arg FETCH_WEIGHTS=true: the official weights are downloaded at build time, so a container
# starts without a network.
ARG FETCH_WEIGHTS=false
RUN if [ "$FETCH_WEIGHTS" = "true" ]; then vggish download --dir /app/weights --no-progress; fi
VOLUME ["/data"]

EXPOSE 8000
# Ready, not just alive: /readyz answers 200 once the model is loaded and warmed up, 503 before
# (and for good if the warm-up fails); a start takes seconds, longer on a busy machine. Failures in
# the start period do not count; after it, 3 do.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request\ntry:\n    urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('VGGISH_PORT', '8000'), timeout=4)\nexcept Exception as e:\n    sys.exit('not ready: %s' % e)"]
CMD ["vggish", "serve"]

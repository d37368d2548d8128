# VGGish REST service (CPU). Build:  docker build -t vggish .
# Weights: mount them at /app/weights (vggish.safetensors, or Google's vggish_model.ckpt +
# vggish_pca_params.npz, converted on first start), or fetch them at build time with
#   docker build --build-arg FETCH_WEIGHTS=true -t vggish .
# Run:  docker run -p 8000:8000 -v "$PWD/weights:/app/weights" vggish
#       docker run -p 8000:8000 -e VGGISH_WEIGHTS=random vggish      (demo, meaningless numbers)
# The backend is `auto`: ONNX Runtime (the image carries it); its graph is exported at build time
# with FETCH_WEIGHTS=true, else on first start (~15 s) into VGGISH_CACHE_DIR. -e VGGISH_BACKEND=torch
# for PyTorch. Threads follow the container's CPU quota (docker run --cpus N); VGGISH_NUM_THREADS overrides.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG FETCH_WEIGHTS=false
ARG TORCH_INDEX_URL=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VGGISH_HOST=0.0.0.0 \
    VGGISH_PORT=8000 \
    VGGISH_WEIGHTS=/app/weights/vggish.safetensors \
    VGGISH_CACHE_DIR=/app/cache \
    OPENBLAS_NUM_THREADS=1
# OPENBLAS_NUM_THREADS=1: the decode threads run side by side, and NumPy's own BLAS threads on
# top of them oversubscribe the cores (2.7x slower log-mel on 16 cores; see bench_service.py).

# ffmpeg decodes what libsndfile cannot (m4a/aac, alac, video containers); soundfile's wheel
# carries libsndfile itself.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# torch first. The default Linux wheel carries CUDA (several GB); for a slim CPU image pass
# PyTorch's CPU wheel index: --build-arg TORCH_INDEX_URL=<PyTorch's CPU index URL>.
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md LICENSE NOTICE ./
COPY vggish ./vggish
COPY app ./app
# postgres: psycopg, for replicas sharing their heads (VGGISH_DATABASE_URL=postgresql://...)
RUN pip install ".[serve,onnx,postgres]"

RUN useradd --create-home --uid 10001 vggish \
    && mkdir -p /app/weights /app/cache \
    && if [ "$FETCH_WEIGHTS" = "true" ]; then vggish download --dir /app/weights --no-progress \
         && python -c "import vggish; vggish.load_model('/app/weights/vggish.safetensors', backend='onnx', cache_dir='/app/cache')"; fi \
    && chown -R vggish:vggish /app/weights /app/cache
USER vggish

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["vggish", "serve"]

# Stands for ghcr.io/astral-sh/uv:${UV_VERSION}: a scratch image holding /uv, the binary of PyPI's uv
# wheel of that version (build.py takes it from the wheel). Our Dockerfile only copies /uv out of it.
FROM scratch
COPY uv /uv

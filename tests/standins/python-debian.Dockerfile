# Stands for python:${PYTHON_VERSION}-slim, with Debian's CPython of that version: bookworm's 3.11,
# or sid's 3.14 on a sid root (BASE: sid's python3.14 needs sid's libc; the official 3.14 image is on
# trixie). What our Dockerfile relies on, kept as the official image has it: `python` at
# /usr/local/bin/python (uv finds the image's interpreter there), `venv` with ensurepip, the official
# PATH, `useradd`, and a CA bundle at Debian's path.
# Test-only: the bundle is this machine's (its network is reached through its own CA), and
# SSL_CERT_FILE points uv at it; the official image trusts the public CAs without any setting.
ARG BASE=standin/base
FROM ${BASE}
ARG PYTHON_VERSION
# sid's Release file expires within days (Valid-Until; bookworm's has none): a mirror serving an older
# snapshot of it, as this machine's does, would be refused without Check-Valid-Until=false.
RUN apt-get -o Acquire::Check-Valid-Until=false update && apt-get install -y python${PYTHON_VERSION} libpython${PYTHON_VERSION}-stdlib \
        python${PYTHON_VERSION}-venv \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/python${PYTHON_VERSION} /usr/local/bin/python${PYTHON_VERSION} \
    && ln -s python${PYTHON_VERSION} /usr/local/bin/python3 && ln -s python3 /usr/local/bin/python
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]

# Stands for python:${PYTHON_VERSION}-slim, with this machine's pyenv build of that version (Debian
# bookworm has only 3.11), copied to its own path, PYENV_PREFIX, with the shared libraries it links.
# What our Dockerfile relies on, kept as the official image has it: `python` at /usr/local/bin/python,
# the official PATH, `useradd`, and a CA bundle at Debian's path.
# Test-only: the bundle is this machine's (its network is reached through its own CA), and
# SSL_CERT_FILE points uv at it; the official image trusts the public CAs without any setting.
FROM standin/base
ARG PYTHON_VERSION
ARG PYENV_PREFIX
RUN apt-get update && apt-get install -y libssl3 libffi8 libsqlite3-0 zlib1g libbz2-1.0 liblzma5 \
        libreadline8 libncursesw6 libexpat1 libuuid1 \
    && rm -rf /var/lib/apt/lists/*
COPY python ${PYENV_PREFIX}
# pyenv's build finds its libpython by an absolute rpath, so it stays at its path; /root opens to
# the image's non-root user for it (test-only: the official interpreter lives in /usr/local).
RUN chmod 755 /root && ln -s ${PYENV_PREFIX}/bin/python${PYTHON_VERSION} /usr/local/bin/python${PYTHON_VERSION} \
    && ln -s python${PYTHON_VERSION} /usr/local/bin/python3 && ln -s python3 /usr/local/bin/python
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]

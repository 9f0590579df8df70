# Not an official image: the root every stand-in starts from. The base is `debootstrap --variant=minbase
# SUITE` imported with `docker import` (build.py: bookworm for most, sid or trixie for a version only
# they have); this layer makes apt behave as in Docker's Debian images: no service started at install
# time, no recommended packages, no apt lists (each Dockerfile removes them), downloaded packages or
# package caches kept (Docker's docker-clean: under vfs each container is a full copy of its image, so
# what apt leaves costs every `up`).
ARG MINBASE=standin/bookworm-minbase
FROM ${MINBASE}
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
    && printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > /etc/apt/apt.conf.d/90standin \
    && clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"' \
    && printf 'DPkg::Post-Invoke { %s; };\nAPT::Update::Post-Invoke { %s; };\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' \
        "$clean" "$clean" > /etc/apt/apt.conf.d/docker-clean \
    && rm -f /var/cache/apt/*.bin
ENV LANG=C.UTF-8
CMD ["bash"]

# Not an official image: the root every stand-in starts from. The base is `debootstrap --variant=minbase
# SUITE` imported with `docker import` (build.py: bookworm for most, sid or trixie for a version only
# they have); this layer makes apt behave as in Docker's Debian images: no service started at install
# time, no recommended packages, no apt lists left.
ARG MINBASE=standin/bookworm-minbase
FROM ${MINBASE}
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
    && printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > /etc/apt/apt.conf.d/90standin
ENV LANG=C.UTF-8
CMD ["bash"]

# Not an official image: the root every stand-in starts from. The base is `debootstrap --variant=minbase
# bookworm` imported with `docker import` (build.py); this layer makes apt behave as in Docker's
# Debian images: no service started at install time, no recommended packages, no apt lists left.
FROM standin/bookworm-minbase
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
    && printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > /etc/apt/apt.conf.d/90standin
ENV LANG=C.UTF-8
CMD ["bash"]

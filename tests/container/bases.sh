#!/usr/bin/env bash
# Makes the two local base images that tests/container.rs builds the
# repository's Dockerfile on, without a registry (this machine reaches
# Debian's mirror and crates.io, not Docker Hub or gcr.io):
#
#   localhost/cloakroom-test/rust  stands in for docker.io/library/rust:*-slim-bookworm:
#                                  Debian bookworm (mmdebstrap minbase) with gcc,
#                                  libc6-dev, this machine's CA bundle (what it trusts
#                                  to reach crates.io) and its Rust toolchain under
#                                  /usr/local/rust.
#   localhost/cloakroom-test/cc    stands in for gcr.io/distroless/cc-debian12:nonroot:
#                                  bookworm's libc6 and libgcc-s1 unpacked (no shell,
#                                  no package manager), the CA bundle, and /etc/passwd
#                                  and /etc/group naming root and nonroot (65532).
#
# Each image is made once per machine; `podman image exists` skips it after.
# Runs as root (mmdebstrap --mode=root, podman with the runtime CONTAINERS_CONF names).
set -euo pipefail

mirror=${CLOAKROOM_TEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
builder=localhost/cloakroom-test/rust:bookworm
runtime=localhost/cloakroom-test/cc:bookworm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! podman image exists "$builder"; then
  sysroot=$(rustc --print sysroot)
  echo "== making $builder (mmdebstrap + the toolchain at $sysroot)"
  mmdebstrap --quiet --variant=minbase --mode=root \
    --include=gcc,libc6-dev,ca-certificates \
    --customize-hook='mkdir -p "$1/usr/local/rust"' \
    --customize-hook="copy-in $sysroot/bin $sysroot/lib $sysroot/libexec /usr/local/rust" \
    --customize-hook='copy-in /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs' \
    --customize-hook='rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/var/cache/apt/*' \
    bookworm "$work/builder.tar" "$mirror"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    "$work/builder.tar" "$builder" >/dev/null
fi

if ! podman image exists "$runtime"; then
  echo "== making $runtime (mmdebstrap extract: libc6, libgcc-s1)"
  mmdebstrap --quiet --variant=extract --mode=root \
    --include=libc6,libgcc-s1 \
    --customize-hook='mkdir -p "$1/etc/ssl/certs" "$1/tmp" && chmod 1777 "$1/tmp"' \
    --customize-hook='copy-in /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs' \
    --customize-hook='printf "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n" > "$1/etc/passwd"' \
    --customize-hook='printf "root:x:0:\nnonroot:x:65532:\n" > "$1/etc/group"' \
    --customize-hook='rm -rf "$1"/usr/share/doc "$1"/usr/share/man "$1"/usr/share/locale "$1"/usr/share/lintian "$1"/var/lib/dpkg "$1"/var/cache/*' \
    bookworm "$work/runtime.tar" "$mirror"
  podman import --quiet "$work/runtime.tar" "$runtime" >/dev/null
fi

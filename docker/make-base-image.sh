#!/usr/bin/env bash
# Make `debian:bookworm-slim` available locally: pull it, or, where Docker Hub is unreachable,
# build an equivalent minimal root file system with debootstrap from the Debian mirror apt uses.
set -euo pipefail
IMAGE=debian:bookworm-slim
DOCKER=${DOCKER:-/usr/bin/docker}
if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then exit 0; fi
if timeout 60 "$DOCKER" pull "$IMAGE" >/dev/null 2>&1; then exit 0; fi
mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' | grep -v security | grep -m1 debian || true)
: "${mirror:?no Debian mirror found in the apt sources}"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "building $IMAGE with debootstrap from $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
tar -C "$root" -c . | "$DOCKER" import - "$IMAGE" >/dev/null

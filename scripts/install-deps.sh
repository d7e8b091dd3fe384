#!/bin/bash
# Installs what building and testing dfget needs on Debian (run as root). Idempotent.
set -euo pipefail
PKGS=(libuv1-dev libssl-dev curl iproute2 docker-registry containerd skopeo busybox-static apache2-utils python3-grpcio prometheus dnsmasq-base)
if [ "${1:-}" = "--bench" ]; then PKGS+=(nginx squid-openssl wrk); fi
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
python3 -m pytest --version >/dev/null 2>&1 || python3 -m pip install -q pytest
python3 -c "import cryptography" 2>/dev/null || python3 -m pip install -q cryptography
python3 -c "import prometheus_client" 2>/dev/null || python3 -m pip install -q prometheus_client

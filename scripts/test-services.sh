#!/usr/bin/env bash
# Install and check what the test suite needs beyond the venv: Debian packages and PostgreSQL.
# Idempotent and quick when everything is present.
set -euo pipefail

need=()
command -v swaks >/dev/null 2>&1 || need+=(swaks)
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-imapd)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# axe-core, the accessibility checker the browser tests inject into the staff pages (npm).
AXE_DIR="$(cd "$(dirname "$0")/.." && pwd)/.cache/axe"
if [ ! -f "$AXE_DIR/node_modules/axe-core/axe.min.js" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  npm install --silent --no-audit --no-fund --prefix "$AXE_DIR" axe-core@4.10.2 >/dev/null
fi
echo "axe-core: $AXE_DIR/node_modules/axe-core/axe.min.js"

# PostgreSQL runs on these machines at 127.0.0.1:5432 (trust auth); start it if it stopped.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
    [ -n "$version" ] && pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
  fi
fi
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "postgresql: ready at 127.0.0.1:5432"
else
  echo "postgresql: NOT reachable at 127.0.0.1:5432 (tests that need it fail in CI)" >&2
fi

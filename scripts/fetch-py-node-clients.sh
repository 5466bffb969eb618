#!/bin/sh
# Installs the Python and Node clients tests/tests/clients.rs drives, pinned,
# once per set of versions, outside the checkout:
#   CACHE/clients/python-docker-D-testcontainers-T-REQHASH/  a venv (tests/clients/requirements.txt)
#   CACHE/clients/node-testcontainers-N-LOCKHASH/            npm ci (tests/clients/package*.json)
# with CACHE/clients/python and CACHE/clients/node pointing at them. Only
# PyPI and npm are asked; nothing is installed into the system.
# Usage: scripts/fetch-py-node-clients.sh CACHE
set -eu
cache=$1
here=$(cd "$(dirname "$0")/.." && pwd)
DOCKER_PY=7.1.0
TESTCONTAINERS_PY=4.15.0
# 12.x needs Node 22; 11.14.0 is the newest 11.x and runs on Node 20.
TESTCONTAINERS_NODE=11.14.0
mkdir -p "$cache/clients"

# The exact set of packages is tests/clients/requirements.txt (pip freeze).
req="$here/tests/clients/requirements.txt"
for pin in "docker==$DOCKER_PY" "testcontainers==$TESTCONTAINERS_PY"; do
  grep -qx "$pin" "$req" || { echo "fetch-py-node-clients: tests/clients/requirements.txt does not pin $pin" >&2; exit 1; }
done
py="$cache/clients/python-docker-$DOCKER_PY-testcontainers-$TESTCONTAINERS_PY-$(sha256sum "$req" | cut -c1-12)"
if [ ! -x "$py/bin/python" ] || ! "$py/bin/python" -c 'import docker, testcontainers' 2>/dev/null; then
  command -v python3 >/dev/null || { echo "fetch-py-node-clients: no python3 (make deps installs python3-venv)" >&2; exit 1; }
  # Made where it stays (a venv's scripts name its path); a half-made one
  # fails the import check above and is made anew.
  rm -rf "$py"
  python3 -m venv "$py" || { echo "fetch-py-node-clients: python3 -m venv failed: on Debian, install python3-venv (make deps does)" >&2; exit 1; }
  "$py/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
fi
ln -sfn "$(basename "$py")" "$cache/clients/python.tmp" && mv -T "$cache/clients/python.tmp" "$cache/clients/python"

# The exact dependency tree is tests/clients/package-lock.json (npm ci).
lock="$here/tests/clients/package-lock.json"
node="$cache/clients/node-testcontainers-$TESTCONTAINERS_NODE-$(sha256sum "$lock" | cut -c1-12)"
if [ ! -f "$node/node_modules/testcontainers/package.json" ]; then
  command -v npm >/dev/null || { echo "fetch-py-node-clients: no npm: install Node.js 20 or newer with npm" >&2; exit 1; }
  grep -q "\"testcontainers\": \"$TESTCONTAINERS_NODE\"" "$here/tests/clients/package.json" ||
    { echo "fetch-py-node-clients: tests/clients/package.json does not pin testcontainers $TESTCONTAINERS_NODE" >&2; exit 1; }
  rm -rf "$node.tmp"; mkdir -p "$node.tmp"
  cp "$here/tests/clients/package.json" "$lock" "$node.tmp/"
  npm ci --prefix "$node.tmp" --no-audit --no-fund --loglevel=error >&2
  rm -rf "$node"; mv "$node.tmp" "$node"
fi
ln -sfn "$(basename "$node")" "$cache/clients/node.tmp" && mv -T "$cache/clients/node.tmp" "$cache/clients/node"
echo "$py"
echo "$node"

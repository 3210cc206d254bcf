#!/usr/bin/env bash
# Make sure the machine has what the Python packages cannot bring: Java 17+, Maven (Kafka is
# assembled from Maven Central jars and run with plain `java`), promtool and npm. PostgreSQL and
# nginx are installed on first use by deploy/localstack/{postgres,gateway}.py. Installs from
# Debian's packages when missing (needs root, as on CI); otherwise only reports.
set -euo pipefail

need=()
if ! command -v java >/dev/null 2>&1; then
  need+=(openjdk-17-jre-headless)
else
  major=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
  if [ "${major%%.*}" -lt 17 ]; then need+=(openjdk-17-jre-headless); fi
fi
command -v mvn >/dev/null 2>&1 || need+=(maven)
# promtool (Debian's prometheus package) runs the alerting-rule tests (tests/unit/observability).
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# npm (with Node.js) installs the TypeScript client's packages from its lock (make client-deps).
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
# The Makefile makes .venv with `python3.11 -m venv`: Debian ships venv/ensurepip separately.
PYTHON=${PYTHON:-python3.11}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "missing: $PYTHON (Debian/Ubuntu: sudo apt-get install python3.11 python3.11-venv;" \
    "macOS: brew install python@3.11)" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need+=(python3.11-venv)
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(uname -s)" = Darwin ]; then
  echo "missing: ${need[*]} (macOS: brew install openjdk@17 maven python@3.11 postgresql@17 nginx node;" \
    "docs/deploy.md \"Newcomers\")" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing: ${need[*]} (install them, e.g. sudo apt-get install ${need[*]})" >&2
  exit 1
fi
echo "installing ${need[*]} from Debian's packages ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null

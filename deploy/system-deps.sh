#!/usr/bin/env bash
# Make sure the machine has what the Python packages cannot bring: Java 17+, Maven (Kafka is
# assembled from Maven Central jars and run with plain `java`) and promtool. PostgreSQL and nginx are installed
# on first use by deploy/localstack/{postgres,gateway}.py. Installs from Debian's packages when
# missing (needs root, as on CI); otherwise only reports.
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

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing: ${need[*]} (install them, e.g. sudo apt-get install ${need[*]})" >&2
  exit 1
fi
echo "installing ${need[*]} from Debian's packages ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null

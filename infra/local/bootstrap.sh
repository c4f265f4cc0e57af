#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks for the local stack: Java 17+ (OpenSearch),
# Maven (resolves OpenSearch from Maven Central), Python venv support, PostgreSQL (the
# Prefect server's database). Idempotent.
set -euo pipefail

missing=()
java_ok() {
  command -v java >/dev/null 2>&1 || return 1
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [ "${v:-0}" -ge 17 ]
}
java_ok || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# The Prefect server's database (SQLite stalls concurrent runs on its write lock).
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
# The UI test drives Debian's Chromium (Playwright never downloads a browser here).
[ -x /usr/bin/chromium ] || missing+=(chromium)
# The CDK app (infra/aws) synthesizes through jsii, which runs on Node.js.
command -v node >/dev/null 2>&1 || missing+=(nodejs)

if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: need root to install ${missing[*]} (or install them yourself)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi

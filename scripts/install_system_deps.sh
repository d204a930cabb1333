#!/usr/bin/env bash
# Debian packages the tests drive for real: Chromium (review UI browser test) and PostgreSQL
# (review queue on Postgres). Installs only what is missing; needs root or passwordless sudo.
set -euo pipefail
need=()
[[ -x /usr/bin/chromium ]] || need+=(chromium)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
((${#need[@]})) || exit 0
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo -n"
echo "installing system packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

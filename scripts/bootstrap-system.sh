#!/bin/sh
# Install the Debian packages the sandbox's real servers need, and only those missing:
#   prometheus         Prometheus 2.42 (/usr/bin/prometheus)
#   postgresql-15      PostgreSQL 15 server binaries (/usr/lib/postgresql/15/bin)
#   redis-server       Redis 7 (/usr/bin/redis-server), the platform's cache
#   kubernetes-client  kubectl, only when no kubectl is on PATH
#   chromium           headless Chromium for the JupyterLab browser test (Playwright drives it)
#   python3-cryptography  the WAL archiver's crypto for the system Python: PostgreSQL runs its
#                      archive_command as user postgres, who cannot reach a venv in root's home
# Idempotent and instant when everything is there. Installs with --no-upgrade so that a
# preinstalled point release is left alone, and without starting the packages' system
# services (the sandbox runs its own servers on free loopback ports).
set -eu

missing=""
command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing="$missing postgresql-15"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v kubectl >/dev/null 2>&1 || missing="$missing kubernetes-client"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
/usr/bin/python3 -c 'import cryptography.hazmat.primitives.ciphers.aead' >/dev/null 2>&1 \
    || missing="$missing python3-cryptography"

if [ -z "$missing" ]; then
    echo "bootstrap-system: prometheus, postgresql-15, redis-server, kubectl, chromium and python3-cryptography are installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap-system: missing Debian packages:$missing" >&2
    echo "bootstrap-system: run as root:  sudo $0" >&2
    echo "                  or:           sudo apt-get install -y --no-upgrade$missing" >&2
    exit 1
fi

echo "bootstrap-system: installing$missing"
# Keep the packages' postinst scripts from starting system-wide services (a Prometheus on
# :9090, a PostgreSQL cluster on :5432, a Redis on :6379): policy-rc.d exit 101 means "action forbidden".
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT INT TERM
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get install -y -q --no-upgrade --no-install-recommends $missing
echo "bootstrap-system: done"

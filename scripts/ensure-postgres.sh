#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries (initdb, postgres, >= 14) exist for the tests' throwaway
# clusters. Installs Debian's `postgresql` package when they are missing and we are root.
set -euo pipefail

find_initdb() {
    local candidate
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
        echo "$(pg_config --bindir)/initdb"; return 0
    fi
    for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$candidate/initdb" ]; then echo "$candidate/initdb"; return 0; fi
    done
    command -v initdb 2>/dev/null
}

if initdb_path=$(find_initdb) && [ -n "$initdb_path" ]; then
    echo "postgres: using $initdb_path ($("$initdb_path" --version))"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "PostgreSQL server binaries (initdb) are missing: install them, e.g. 'sudo apt-get install postgresql'." >&2
    exit 1
fi
echo "postgres: installing Debian's postgresql package"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# The package starts a cluster of its own via systemd where systemd runs; the tests do not use it.
initdb_path=$(find_initdb)
echo "postgres: using $initdb_path ($("$initdb_path" --version))"

#!/usr/bin/env bash
# Create the project venv (.venv, or $OV_VENV) and install the project with its test extra.
# Installs Debian's chromium when /usr/bin/chromium is missing and apt-get is usable.
# Idempotent: pip runs again only when pyproject.toml / setup.py / setup.cfg change
# (or OV_FORCE_INSTALL=1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OV_VENV:-$ROOT/.venv}"
log() { printf '[install] %s\n' "$*" >&2; }

# --- apt helper (shared with .ci/run): install packages, apt-get update only if needed ---
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "apt-get not available; cannot install: $*"
        return 1
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
            log "not root and no sudo; cannot install: $*"; return 1; fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get install -y $*"
    if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
        log "install failed; running apt-get update and retrying"
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    fi
}

# --- pick a Python >= 3.11 ---
find_python() {
    local cand
    for cand in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$cand" ] || continue
        command -v "$cand" >/dev/null 2>&1 || continue
        if "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$cand"; return 0
        fi
    done
    return 1
}

cd "$ROOT"

if [ ! -x "$VENV/bin/python" ]; then
    PY="$(find_python)" || { log "no Python >= 3.11 found (set PYTHON=...)"; exit 1; }
    log "creating venv $VENV with $PY ($("$PY" --version 2>&1))"
    if ! "$PY" -m venv "$VENV" 2>/dev/null; then
        # Debian's python3 lacks ensurepip until python3-venv is installed.
        rm -rf "$VENV"
        pyver="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        apt_install "python${pyver}-venv" || apt_install python3-venv
        "$PY" -m venv "$VENV"
    fi
else
    log "venv exists: $VENV ($("$VENV/bin/python" --version 2>&1))"
fi

stamp_file="$VENV/.ov-install-stamp"
stamp="$(for f in pyproject.toml setup.py setup.cfg; do [ ! -f "$f" ] || cat "$f"; done | sha256sum | cut -d' ' -f1)"
if [ ! -f pyproject.toml ] && [ ! -f setup.py ]; then
    log "ERROR: no pyproject.toml or setup.py in $ROOT: cannot pip install -e '.[test]'"
    exit 1
fi
if [ "${OV_FORCE_INSTALL:-0}" = "1" ] || [ ! -f "$stamp_file" ] || [ "$(cat "$stamp_file")" != "$stamp" ]; then
    log "pip install -e '.[test]'"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'; then
        log "ERROR: pip install -e '.[test]' failed"
        exit 1
    fi
    echo "$stamp" > "$stamp_file"
else
    log "project already installed (packaging files unchanged); skipping pip"
fi

if [ ! -x /usr/bin/chromium ]; then
    if command -v apt-get >/dev/null 2>&1; then
        apt_install chromium || log "WARNING: could not install chromium; browser tests will fail or skip"
    else
        log "WARNING: /usr/bin/chromium missing and no apt-get; set OV_BROWSER_PATH"
    fi
else
    log "chromium present: /usr/bin/chromium"
fi

# Debian's nginx: the reverse proxy of deploy/nginx/, which test_deploy_proxy.py starts on its
# own config and ports (and fails without). The package's own service is not wanted here: if the
# install started it (a host with systemd and no policy-rc.d), it is stopped and disabled.
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    log "nginx present: $(command -v nginx || echo /usr/sbin/nginx)"
elif command -v apt-get >/dev/null 2>&1; then
    if apt_install nginx; then
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
            log "stopping and disabling the nginx service the package started (the tests run their own)"
            if [ "$(id -u)" -eq 0 ]; then systemctl disable --now nginx; else sudo -n systemctl disable --now nginx; fi \
                || log "WARNING: could not stop the nginx service (port 80)"
        fi
    else
        log "WARNING: could not install nginx; test_deploy_proxy.py will fail"
    fi
else
    log "WARNING: nginx missing and no apt-get; test_deploy_proxy.py will fail"
fi
log "done"

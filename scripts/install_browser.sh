#!/usr/bin/env bash
# Install headless Chromium and its WebDriver (Debian packages) for the browser test.
# Idempotent: does nothing when both are already present. Needs root (or sudo).
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install_browser.sh: not root and no sudo; the browser test will be skipped" >&2
        exit 0
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "installed: $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"

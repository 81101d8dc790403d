#!/usr/bin/env bash
# Install everything the tests need (Debian packages ffmpeg, rtmpdump, curl,
# squid, chromium and chromium-driver, the Python test extras in ./.venv) and run
# the whole suite: unit tests, lint, type checks and interop tests with real clients.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"  # squid lives in /usr/sbin

need=()
for tool in ffmpeg ffprobe rtmpdump curl squid chromium chromedriver; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ "${#need[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq ffmpeg rtmpdump curl squid chromium chromium-driver >/dev/null
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'

.venv/bin/ruff check flashstream tests twisted bench
.venv/bin/mypy
.venv/bin/sphinx-build -E -W -q -b html docs docs/_build/html
.venv/bin/pytest -n 2 -p no:cacheprovider "$@"

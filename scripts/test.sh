#!/usr/bin/env bash
# Runs every test: sets up the machine (scripts/setup.sh), builds, then meson test.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${TANDEM_BUILD_DIR:-$here/build}
"$here/scripts/setup.sh"
meson test -C "$build_dir" --print-errorlogs --num-processes 2 "$@"

#!/usr/bin/env bash
# Sets up, builds and runs ringmaild in the foreground on its embedded default config
# (ESMTP on 127.0.0.1:2525, spool under ./var/spool). Extra arguments go to ringmaild.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build
exec build/tools/ringmaild/ringmaild "$@"

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds softmig and runs its tests: the README's second command, and what CI runs.
#
#   scripts/test.sh                 # build, then every test of the default preset
#   scripts/test.sh -L unit         # extra arguments go to ctest
#
# Installs missing build dependencies first when run as root (scripts/deps.sh).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/deps.sh
. "$root/scripts/deps.sh"
softmig_install_deps

cd "$root"
cmake --preset default
cmake --build --preset default -j"$(nproc)"
ctest --preset default "$@"

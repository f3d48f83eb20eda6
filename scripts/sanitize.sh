#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the core, platform and unit tests with AddressSanitizer + UndefinedBehaviorSanitizer,
# then with ThreadSanitizer, and runs the unit tests under each. The preloaded library is never
# sanitized (see cmake/sanitizers.cmake). Part of CI; run it after scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/deps.sh
. "$root/scripts/deps.sh"
softmig_install_deps
cd "$root"
for preset in asan tsan; do
  echo "== $preset"
  cmake --preset "$preset" > /dev/null
  cmake --build --preset "$preset" -j"$(nproc)" --target softmig_unit_tests
  ctest --preset "$preset"
done

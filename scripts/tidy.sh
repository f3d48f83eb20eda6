#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# clang-tidy (Debian's clang-tidy 14) on the project's own code: src/core, src/platform,
# src/hooks and src/tool (not their tests), with the checks in .clang-tidy and the compile
# commands of the default build (scripts/test.sh makes it). Any finding fails.
#
#   scripts/tidy.sh              # every file
#   scripts/tidy.sh src/core/*.cpp
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${TIDY_BUILD_DIR:-build}"
tidy="${CLANG_TIDY:-clang-tidy}"
command -v "$tidy" >/dev/null || { echo "tidy: $tidy not found (apt-get install clang-tidy)"; exit 1; }
[[ -f "$build/compile_commands.json" ]] || { echo "tidy: no $build/compile_commands.json (run scripts/test.sh first)"; exit 1; }
if (($# > 0)); then
  files=("$@")
else
  # The files of the checkout (in CI, a clean checkout: every file); work in progress that is
  # not yet added to git is left for its author to check with an explicit list.
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files 'src/core/*.cpp' 'src/platform/*.cpp' 'src/hooks/*.cpp' 'src/tool/*.cpp' |
                         grep -v '^src/tool/tests/')
  else
    mapfile -t files < <(find src/core src/platform src/hooks src/tool -name '*.cpp' -not -path 'src/tool/tests/*' | sort)
  fi
fi
# Only files the build compiles have compile commands.
mapfile -t files < <(for f in "${files[@]}"; do grep -q "\"file\": \"[^\"]*/$f\"" "$build/compile_commands.json" && echo "$f"; done)
echo "tidy: ${#files[@]} files, $("$tidy" --version | grep -o 'version [0-9.]*')"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# -Wno-unknown-warning-option: the build's GCC-only warning flags mean nothing to clang.
if printf '%s\n' "${files[@]}" | xargs -P"$(nproc)" -n2 "$tidy" -p "$build" --quiet \
     --extra-arg=-Wno-unknown-warning-option >"$log" 2>&1; then
  echo "tidy: clean"
else
  grep -E '(warning|error):' -A3 "$log" | grep -v '^--$' | head -200
  echo "tidy: findings above ($(grep -cE '(warning|error):' "$log") lines)"
  exit 1
fi

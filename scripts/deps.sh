#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The build dependencies, in one place, for scripts/demo.sh, scripts/test.sh and .ci/run.
#
# Sourced:   . scripts/deps.sh && softmig_install_deps [EXTRA_PACKAGE...]
# Executed:  scripts/deps.sh [EXTRA_PACKAGE...]
#
# Installs the Debian/Ubuntu packages that are missing, with apt-get, when run as root. As another
# user it names the missing packages and the command to install them, and goes on: the build
# then says what it lacks.

SOFTMIG_BUILD_DEPS=(
  cmake ninja-build g++ pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libfmt-dev nlohmann-json3-dev
)

softmig_install_deps() {
  local wanted=("${SOFTMIG_BUILD_DEPS[@]}" "$@")
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps: not a Debian-based system; make sure these (or their equivalents) are installed: ${wanted[*]}"
    return 0
  fi
  local missing=() pkg
  for pkg in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing packages: ${missing[*]}"
    echo "deps: install them with: sudo apt-get install -y ${missing[*]}"
    return 0
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  softmig_install_deps "$@"
fi

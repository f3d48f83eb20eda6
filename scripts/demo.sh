#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's first command: build softmig, then run one CUDA program twice, on the whole GPU
# and in a 4 GiB slice, and compare what it saw and what it could allocate.
#
#   scripts/demo.sh                      # install missing deps (as root), build, run
#   scripts/demo.sh --fake               # use softmig's fake driver even if a GPU is present
#   scripts/demo.sh --no-build --build-dir DIR   # run against an existing build (used by ctest)
#
# Without an NVIDIA GPU and driver it runs the same program against softmig's fake driver
# (build/fake/libcuda.so.1), which simulates one 16 GiB GPU.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="$root/build"
do_build=1
force_fake=0
slice=4G
slice_label="4 GiB"
slice_bytes=$((4 << 30))

usage() { sed -n '3,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
  case "$1" in
    --no-build) do_build=0 ;;
    --fake) force_fake=1 ;;
    --build-dir)
      [[ $# -ge 2 ]] || { echo "demo: --build-dir needs a directory" >&2; exit 2; }
      build_dir="$(cd "$2" && pwd)"
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "demo: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if ((do_build)); then
  # shellcheck source=scripts/deps.sh
  . "$root/scripts/deps.sh"
  softmig_install_deps
  echo "== Building softmig (cmake --preset default) =="
  (cd "$root" && cmake --preset default >/dev/null && cmake --build --preset default -j"$(nproc)")
  build_dir="$root/build"
fi

demo="$build_dir/bin/slice_demo"
tool="$build_dir/bin/softmig"
for f in "$demo" "$tool"; do
  [[ -x "$f" ]] || { echo "demo: $f is missing: build first (scripts/demo.sh without --no-build)" >&2; exit 1; }
done

have_gpu() {
  local ldconfig
  ldconfig="$(command -v ldconfig || echo /sbin/ldconfig)"
  # grep -c reads everything: "ldconfig -p | grep -q" can fail under pipefail (SIGPIPE).
  nvidia-smi -L >/dev/null 2>&1 && [[ $("$ldconfig" -p 2>/dev/null | grep -c 'libcuda\.so\.1') -gt 0 ]]
}

if ((force_fake)) || ! have_gpu; then
  if ((force_fake)); then
    echo "Using softmig's fake driver (a simulated 16 GiB GPU), as asked (--fake)."
  else
    echo "No NVIDIA GPU found: running the same demo against softmig's fake driver (a simulated 16 GiB GPU)"
  fi
  if [[ ! -e "$build_dir/fake/libcuda.so.1" ]]; then
    echo "demo: the fake driver is not built ($build_dir/fake/libcuda.so.1 is missing; it comes from tests/fakes)" >&2
    exit 1
  fi
  export LD_LIBRARY_PATH="$build_dir/fake${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export SOFTMIG_FAKE_DEVICES=16G
else
  echo "NVIDIA GPU found: running the demo on the real driver (GPU 0)."
fi

in_slurm=0
if [[ -n "${SLURM_JOB_ID:-}" ]]; then
  in_slurm=1
  echo "Note: inside SLURM job $SLURM_JOB_ID the job's own limits apply, not the --memory $slice below."
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo
echo "== 1/2: the whole GPU: $demo =="
env -u LD_PRELOAD "$demo" | tee "$tmp/bare.txt"
echo
echo "== 2/2: a $slice_label slice: softmig run --memory $slice -- slice_demo =="
"$tool" run --memory "$slice" -- "$demo" | tee "$tmp/slice.txt"

# summary: softmig=... total_bytes=N free_bytes=N device_total_bytes=N obtained_mib=N last_result=N
field() { sed -n 's/^summary: .*\b'"$2"'=\([^ ]*\).*$/\1/p' "$1"; }
gib() { awk -v b="$1" 'BEGIN { printf "%.2f GiB", b / 1073741824 }'; }

bare_total="$(field "$tmp/bare.txt" total_bytes)"
bare_mib="$(field "$tmp/bare.txt" obtained_mib)"
slice_total="$(field "$tmp/slice.txt" total_bytes)"
slice_mib="$(field "$tmp/slice.txt" obtained_mib)"
slice_softmig="$(field "$tmp/slice.txt" softmig)"
if [[ -z "$bare_total" || -z "$slice_total" ]]; then
  echo "demo: slice_demo did not print its summary line" >&2
  exit 1
fi

echo
echo "== Comparison =="
printf '  %-34s %14s %14s\n' "" "whole GPU" "$slice_label slice"
printf '  %-34s %14s %14s\n' "total memory reported (cuMemGetInfo)" "$(gib "$bare_total")" "$(gib "$slice_total")"
printf '  %-34s %14s %14s\n' "memory obtainable (256 MiB blocks)" "$bare_mib MiB" "$slice_mib MiB"

if ((in_slurm)); then
  echo "Inside SLURM: not checking the $slice_label figures (the job's configuration sets the slice)."
elif [[ "$slice_softmig" == "none" ]]; then
  echo "demo: FAILED: libsoftmig.so was not loaded into the second run" >&2
  exit 1
elif ((slice_total > slice_bytes || slice_mib * 1048576 > slice_bytes)); then
  echo "demo: FAILED: the program saw or obtained more than the $slice_label slice" >&2
  exit 1
else
  echo "The same program saw a $slice_label GPU and could not allocate past it: softmig enforced the slice."
fi

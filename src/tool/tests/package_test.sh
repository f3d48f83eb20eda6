#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# package_test.sh BUILD_DIR FAKE_DIR: builds the Debian package with cpack, checks its content,
# installs it into an empty root with dpkg (maintainer scripts run chrootless with DPKG_ROOT),
# runs `softmig doctor --root` there (against the fake driver), installs and removes the
# preload, then removes and purges the package and checks that nothing is left.
set -euo pipefail
build=$1
fake=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/softmig-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "package test: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

step "cpack -G DEB"
(cd "$build" && timeout 120 cpack -G DEB -B "$work/out") > "$work/cpack.log" 2>&1 || { cat "$work/cpack.log"; fail "cpack"; }
deb=$(ls "$work"/out/*.deb)
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
lib=/usr/lib/$arch/softmig/libsoftmig.so

step "content of $(basename "$deb")"
dpkg-deb -c "$deb" | awk '{print $1, $2, $6}' > "$work/contents"
cat "$work/contents"
for f in ./usr/bin/softmig ".$lib" ./usr/lib/tmpfiles.d/softmig.conf ./usr/share/man/man1/softmig.1.gz \
         ./usr/share/doc/softmig/README.md; do
  grep -q " $f\$" "$work/contents" || fail "$f is not in the package"
done
if [[ -d "$(dirname "$0")/../../../slurm" ]]; then
  grep -q " ./usr/share/softmig/slurm/" "$work/contents" || fail "the SLURM scripts are not in the package"
fi
grep -q " ./var/" "$work/contents" && fail "the package ships files under /var (postinst creates the directories)"
grep -q " ./etc/ld.so.preload" "$work/contents" && fail "the package ships /etc/ld.so.preload"
grep -vq "root/root" "$work/contents" && fail "a file is not owned by root"
# (Not "dpkg-deb | grep -q": grep stops reading at the match, and under pipefail the writer's
# SIGPIPE would fail the pipeline at random.)
info=$(dpkg-deb -I "$deb")
grep -q "Depends: .*libc6" <<<"$info" || fail "no dependencies computed"

step "dpkg --root: install into an empty root"
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers" "$root/etc"
: > "$root/var/lib/dpkg/status"
dpkg_root() {
  dpkg --root="$root" --force-script-chrootless --force-depends --log=/dev/null "$@"
}
dpkg_root -i "$deb" > "$work/install.log" 2>&1 || { cat "$work/install.log"; fail "dpkg -i"; }
cat "$work/install.log"
[[ -x "$root/usr/bin/softmig" && -f "$root$lib" ]] || fail "files not installed"
[[ $(stat -c '%a %U' "$root/var/log/softmig") == "1733 root" ]] || fail "/var/log/softmig: $(stat -c '%a %U' "$root/var/log/softmig")"
[[ $(stat -c '%a %U' "$root/var/run/softmig") == "755 root" ]] || fail "/var/run/softmig: $(stat -c '%a %U' "$root/var/run/softmig")"
[[ -e "$root/etc/ld.so.preload" ]] && fail "installing edited /etc/ld.so.preload"

step "softmig doctor on the fresh install: only the preload is missing"
doctor() { env -u LD_PRELOAD LD_LIBRARY_PATH="$fake" SOFTMIG_FAKE_DEVICES=16G "$root/usr/bin/softmig" doctor --root "$root" "$@"; }
set +e
doctor > "$work/doctor1.txt" 2>&1
rc=$?
set -e
cat "$work/doctor1.txt"
[[ $rc == 1 ]] || fail "doctor before install-preload: exit $rc, expected 1"
[[ $(grep -c '^PROBLEM' "$work/doctor1.txt") == 1 ]] || fail "expected exactly one problem"
grep -q '^PROBLEM  preload' "$work/doctor1.txt" || fail "the problem should be the preload"

step "install-preload, doctor again"
"$root/usr/bin/softmig" install-preload --root "$root"
[[ $(cat "$root/etc/ld.so.preload") == "$lib" ]] || fail "ld.so.preload: $(cat "$root/etc/ld.so.preload")"
doctor || fail "doctor after install-preload"

step "dpkg -r: removes the files and the preload entry"
dpkg_root -r softmig > "$work/remove.log" 2>&1 || { cat "$work/remove.log"; fail "dpkg -r"; }
[[ -e "$root/usr/bin/softmig" || -e "$root$lib" ]] && fail "files left after removal"
[[ -e "$root/etc/ld.so.preload" ]] && fail "ld.so.preload still names the removed library"
step "dpkg --purge: removes the directories"
dpkg_root --purge softmig > "$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg --purge"; }
left=$(cd "$root" && find . -mindepth 1 ! -path './var/lib/dpkg*' ! -path './var/lib' ! -path './var' ! -path './etc' \
        ! -path './var/log' ! -path './var/run' ! -path './usr' ! -path './usr/lib' ! -path './usr/share' | sort)
[[ -z "$left" ]] || fail "left after purge: $left"
echo "package test: PASS"

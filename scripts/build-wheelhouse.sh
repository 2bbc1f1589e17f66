#!/usr/bin/env bash
# Build the wheelhouse the Ansible roles install from (pip install --no-index on the hosts, so a host
# runs exactly the tested code and never needs PyPI at deploy time):
#   <outdir>/*.whl          the project wheel + one wheel per dependency of every service, + pip
#   <outdir>/SHA256SUMS     checksums; its hash is the release id (/opt/<service>/venvs/<id>)
#   <outdir>/wheelhouse.tar the wheels and SHA256SUMS in one deterministic tar (what hosts receive)
# Dependencies are pinned to the versions installed in the control venv (the ones the tests ran on).
# Targets Debian 12 (CPython 3.11, x86_64): build on the same platform.
#
# usage: scripts/build-wheelhouse.sh [outdir]   (default dist/wheelhouse)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist/wheelhouse}"
python="${PYTHON:-.venv/bin/python}"
if ! "$python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    echo "error: $python is not CPython 3.11 (Debian 12's); run make install or set PYTHON" >&2
    exit 2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Pins: the control venv's versions, minus the project itself (built fresh from this tree).
"$python" -m pip freeze --exclude-editable --exclude polymm > "$work/constraints.txt"
"$python" -m pip wheel --quiet --wheel-dir "$work/wheels" --constraint "$work/constraints.txt" \
    ".[collector,executor]"
# pip itself, run from its wheel on the hosts: venvs are made --without-pip (ensurepip is slow).
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" \
    "pip==$("$python" -c 'import pip; print(pip.__version__)')"

(cd "$work/wheels" && sha256sum -- *.whl | LC_ALL=C sort -k2 > SHA256SUMS)
# Same wheels -> same tar, byte for byte, so re-running a deploy with it changes nothing.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=u=rw,go=r \
    -cf "$work/wheels/wheelhouse.tar" -C "$work/wheels" SHA256SUMS $(cd "$work/wheels" && ls -- *.whl)

mkdir -p "$(dirname "$out")"
rm -rf "$out"
mv "$work/wheels" "$out"
case "$out" in dist/*) printf '*\n' > dist/.gitignore ;; esac
count="$(wc -l < "$out/SHA256SUMS")"
id="$(printf %s "$(cat "$out/SHA256SUMS")" | sha256sum | cut -c1-12)"  # = the role's release id
echo "wrote $out: $count wheels, $(du -sh "$out/wheelhouse.tar" | cut -f1) tar, release id $id"

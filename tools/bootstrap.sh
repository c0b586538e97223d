#!/usr/bin/env bash
# Installs what fitsync needs to build, run and test from Debian 12 packages.
# Does nothing (and needs no root) when everything is already there.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libwebsockets-dev libhiredis-dev
      libjansson-dev libuv1-dev libssl-dev libcmocka-dev uthash-dev
      redis-server redis-tools clang-format clang libclang-rt-14-dev nodejs npm
      chromium fonts-noto-cjk curl jq util-linux valgrind)
# chromium: the dashboard's browser test drives Debian's /usr/bin/chromium
# curl, jq, util-linux (taskset): the benchmark suite and its smoke test;
# valgrind: make check-valgrind
# (playwright-core never downloads a browser); fonts-noto-cjk: the Chinese
# district names on the page and in its screenshots.

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# nodejs/npm may come from outside Debian (a newer node on PATH is fine).
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    tmp=()
    for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done
    missing=("${tmp[@]+"${tmp[@]}"}")
fi

if ((${#missing[@]})); then
    echo "bootstrap: installing ${missing[*]}"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian package starts a system redis on 6379 where systemd runs; fitsync
# never uses it (it starts its own), so nothing to do about it here.
exit 0

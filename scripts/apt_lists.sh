#!/usr/bin/env bash
# `make demo` holds the built-in `debian` source out of meta-training; it reads the APT
# package lists. On a fresh machine they may be absent (e.g. a slim container): fetch them
# once when we can (root + apt-get: only the Debian package registry is contacted), else say
# what to run. Quiet when the lists are there or the debian cache is already built.
set -euo pipefail
shopt -s nullglob
lists=("${APT_LISTS_DIR:-/var/lib/apt/lists}"/*_Packages*)
cache=("${JAXMAML_CACHE_DIR:-$HOME/.cache/jaxmaml}"/datasets/debian*.json)
if (( ${#lists[@]} )) || (( ${#cache[@]} )); then exit 0; fi
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "make demo: no APT package lists yet (the held-out debian source needs them): apt-get update" >&2
  apt-get update -qq
else
  echo "error: the demo's held-out debian source needs the APT package lists: run \`sudo apt-get update\` once, then make demo again" >&2
  exit 2
fi

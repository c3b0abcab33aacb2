#!/usr/bin/env bash
# meson install into a temporary prefix, then build a program against the
# installed poolmalloc with pkg-config and run it.  Usage: install_test.sh BUILDDIR CONSUMER.cpp
set -euo pipefail
build=$1 consumer=$2
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --no-rebuild --destdir "$dest" --quiet >/dev/null
pc=$(find "$dest" -name poolmalloc.pc | head -1)
[ -n "$pc" ] || { echo "FAIL: no poolmalloc.pc installed"; exit 1; }
for f in poolmalloc.h poolmalloc.hpp poolmalloc_version.h; do
  [ -n "$(find "$dest" -name "$f")" ] || { echo "FAIL: $f not installed"; exit 1; }
done
script=$(find "$dest" -name poolmalloc-profile)
[ -x "$script" ] || { echo "FAIL: poolmalloc-profile not installed executable"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
# Relocate the installed prefix into the staging directory.
prefix=$(pkg-config --variable=prefix poolmalloc)
flags=$(pkg-config --define-variable=prefix="$dest$prefix" --cflags --libs poolmalloc)
libdir=$(pkg-config --define-variable=prefix="$dest$prefix" --variable=libdir poolmalloc)
c++ -std=c++20 -o "$dest/consumer" "$consumer" $flags
LD_LIBRARY_PATH=$libdir "$dest/consumer"
# The C++ header also builds without RTTI.
c++ -std=c++20 -fno-rtti -o "$dest/consumer-nortti" "$consumer" $flags
LD_LIBRARY_PATH=$libdir "$dest/consumer-nortti"
# The installed profile script finds the installed library next to it.
"$script" --no-charts -o "$dest/profile" "$dest/consumer" 2>"$dest/profile.txt" >/dev/null \
  || { echo "FAIL: installed poolmalloc-profile"; cat "$dest/profile.txt"; exit 1; }
grep -q "Request sizes" "$dest/profile.txt"
echo "install ok"

#!/usr/bin/env bash
# Builds SeaweedFS's `weed` (hack/seaweedfs, from the Go module proxy) into a cache outside the
# repository, keyed by the version hack/seaweedfs/go.mod requires, and prints the binary's path.
# The backup tests run its S3 gateway as their object store. A cached build costs nothing; a
# cold one takes minutes (measured in README.md).
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=go-env.sh
. "$here/go-env.sh"

mod=$here/seaweedfs
# the version go.mod requires (a one-line require, or a line of a require block)
ver=$(awk -v m=github.com/seaweedfs/seaweedfs '$1==m && $2 ~ /^v/ {print $2; exit} $1=="require" && $2==m {print $3; exit}' "$mod/go.mod")
[ -n "$ver" ] || { echo "no version of github.com/seaweedfs/seaweedfs in $mod/go.mod" >&2; exit 1; }
out=$cache/seaweedfs-$ver
if [ ! -x "$out/weed" ]; then
  echo "building seaweedfs $ver (cold: several minutes)..." >&2
  mkdir -p "$cache"
  tmp=$(mktemp -d "$out.tmp.XXXXXX") && chmod 755 "$tmp"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$tmp/weed" github.com/seaweedfs/seaweedfs/weed)
  # another build may have won the race: theirs is the same binary
  mv -T "$tmp" "$out" 2>/dev/null || rm -rf "$tmp"
fi
echo "$out/weed"

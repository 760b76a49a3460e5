#!/usr/bin/env bash
# Builds the linearizability checker (hack/linearizability, porcupine from the Go module
# proxy) into a cache outside the repository, keyed by a hash of the module's files, and
# prints the binary's path. A cached build costs nothing; a cold one takes seconds.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=go-env.sh
. "$here/go-env.sh"

mod=$here/linearizability
# names and contents, so that a renamed or added file is a new build too
hash=$(cd "$mod" && find . -type f | LC_ALL=C sort | while read -r f; do echo "$f"; cat "$f"; done | sha256sum | cut -c1-16)
out=$cache/linearizability-$hash
if [ ! -x "$out/linearizability" ]; then
  echo "building linearizability $hash..." >&2
  mkdir -p "$cache"
  tmp=$(mktemp -d "$out.tmp.XXXXXX") && chmod 755 "$tmp"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$tmp/linearizability" .)
  # another build may have won the race: theirs is the same binary
  mv -T "$tmp" "$out" 2>/dev/null || rm -rf "$tmp"
fi
echo "$out/linearizability"

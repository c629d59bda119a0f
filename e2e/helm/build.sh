#!/usr/bin/env bash
# build.sh builds the helm command that the chart tests run, from the pinned
# tools module next to this script, into a cache directory keyed by version:
#
#   ${CHAPERONE_CACHE:-/var/cache/chaperone}/helm-<version>/bin/helm
#
# A stamp file (bin/.stamp) records the sha256 of tools/go.sum; when it
# matches, the build is skipped. Concurrent runs serialise on a flock. The
# last line printed on success is the bin directory.
#
# The first build takes a few minutes on 2 cores.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools="$here/tools"
cache=${CHAPERONE_CACHE:-/var/cache/chaperone}

version=$(cd "$tools" && GOWORK=off go list -m -f '{{.Version}}' helm.sh/helm/v3)
dir="$cache/helm-$version"
bin="$dir/bin"
stamp="$bin/.stamp"
want=$(sha256sum "$tools/go.sum" | cut -d' ' -f1)

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$bin/helm" ]]; then
	echo "helm $version is up to date in $bin (skipping build)" >&2
	echo "$bin"
	exit 0
fi

start=$(date +%s)
echo "building helm $version into $bin ..." >&2
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export GOFLAGS="-trimpath" CGO_ENABLED=0 GOWORK=off
(
	cd "$tools"
	go build -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm
)
mkdir -p "$bin"
mv -f "$tmp/helm" "$bin/helm"
echo "$want" >"$stamp.tmp" && mv -f "$stamp.tmp" "$stamp"
echo "built helm in $(($(date +%s) - start))s" >&2
echo "$bin"

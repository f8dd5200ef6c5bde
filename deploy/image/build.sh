#!/usr/bin/env bash
# build.sh builds vigil's container image without docker and without a
# registry: it builds a static vigil binary (CGO_ENABLED=0) and writes an OCI
# image layout tarball with one layer, annotated with io.containerd.image.name
# so that containerd imports it under that name:
#
#   deploy/image/build.sh                        # bin/vigil-image.tar, named localhost/vigil:VERSION
#   deploy/image/build.sh -o /tmp/vigil.tar -n localhost/vigil:dev -a arm64
#   ctr -n k8s.io images import bin/vigil-image.tar   # on each node (CRI's namespace)
#
# The image holds /usr/bin/vigil (entrypoint; command "agent"), the CA
# certificates of this machine (for https webhooks) and the empty directories
# the agent uses. The name defaults to localhost/vigil:VERSION: CRI normalizes
# a name without a host to the public default registry's, so a local image
# needs a host part for kubelet to find it ("localhost" is never pulled from
# when the image is present and the pull policy is IfNotPresent).
#
# VERSION is `git describe --tags --always --dirty` (or "dev"), or $VERSION;
# COMMIT is `git rev-parse HEAD`, or $COMMIT: both reach `vigil version`.
# Options: -o OUT (tarball), -n NAME (image name), -a ARCH (GOARCH: amd64,
# arm64), -b BINARY (use this static binary instead of building one).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VERSION=${VERSION:-$(git -C "$REPO" describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)}
OUT=$REPO/bin/vigil-image.tar
NAME=
ARCH=$(go env GOARCH)
BINARY=

usage() {
	sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

while getopts "o:n:a:b:h" opt; do
	case $opt in
	o) OUT=$OPTARG ;;
	n) NAME=$OPTARG ;;
	a) ARCH=$OPTARG ;;
	b) BINARY=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage
NAME=${NAME:-localhost/vigil:$VERSION}
case $ARCH in
amd64 | arm64) ;;
*) echo "build.sh: -a $ARCH: allowed values are amd64, arm64" >&2; exit 2 ;;
esac
case $NAME in
*:*) ;;
*) echo "build.sh: -n $NAME: want NAME:TAG (e.g. localhost/vigil:dev)" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs/usr/bin" "$rootfs/etc/ssl/certs" "$rootfs/etc/vigil" "$rootfs/run/vigil" \
	"$rootfs/var/lib/vigil" "$rootfs/var/log/vigil" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"

# The binary: static, so the image needs no libc.
if [ -n "$BINARY" ]; then
	install -m 0755 "$BINARY" "$rootfs/usr/bin/vigil"
else
	(cd "$REPO" && CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" -o "$rootfs/usr/bin/vigil" ./cmd/vigil)
fi
if readelf -lW "$rootfs/usr/bin/vigil" 2>/dev/null | grep -q INTERP; then
	echo "build.sh: $rootfs/usr/bin/vigil is dynamically linked (build it with CGO_ENABLED=0)" >&2
	exit 1
fi
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
	install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi
printf 'root:x:0:0:root:/:/usr/bin/vigil\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"

# The layer: a reproducible tar (sorted, epoch times, root owner), gzipped.
layout=$work/layout
mkdir -p "$layout/blobs/sha256"
tar -C "$rootfs" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$work/layer.tar" .
diffid=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -6 "$work/layer.tar"
ldig=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)
lsize=$(stat -c %s "$work/layer.tar.gz")
mv "$work/layer.tar.gz" "$layout/blobs/sha256/$ldig"

# blob CONTENT: writes a blob, prints "DIGEST SIZE".
blob() {
	local dig
	dig=$(printf %s "$1" | sha256sum | cut -d' ' -f1)
	printf %s "$1" >"$layout/blobs/sha256/$dig"
	echo "$dig ${#1}"
}

cfg=$(printf '{"architecture":"%s","os":"linux","config":{"Entrypoint":["/usr/bin/vigil"],"Cmd":["agent"],"Env":["PATH=/usr/bin:/bin"],"WorkingDir":"/","Labels":{"org.opencontainers.image.title":"vigil","org.opencontainers.image.version":"%s","org.opencontainers.image.description":"vigil node agent: eBPF syscall tracing, detection, response, audit"}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"deploy/image/build.sh"}]}' \
	"$ARCH" "$VERSION" "$diffid")
read -r cdig csize < <(blob "$cfg")
man=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
	"$cdig" "$csize" "$ldig" "$lsize")
read -r mdig msize < <(blob "$man")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
	"$mdig" "$msize" "$ARCH" "$NAME" "${NAME##*:}" >"$layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

mkdir -p "$(dirname "$OUT")"
tar -C "$layout" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$OUT.tmp" oci-layout index.json blobs
mv -f "$OUT.tmp" "$OUT"
echo "build.sh: $NAME ($ARCH) in $OUT; import with: ctr -n k8s.io images import $OUT"

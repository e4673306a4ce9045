#!/usr/bin/env bash
# Builds release binaries of keep, reproducibly:
#
#   deploy/build.sh [-o DIR] [VERSION]
#
# writes DIR/keep-linux-amd64, DIR/keep-linux-arm64 and DIR/SHA256SUMS
# (DIR defaults to ./dist). The binaries are stamped (-ldflags -X) with
# VERSION (default: the tag at HEAD, else the commit time as
# yyyy-mm-ddThh-mm-ssZ, "-dirty" appended if tracked files changed), the
# commit and its date (SOURCE_DATE_EPOCH if set, else the commit time), and
# built with -trimpath and without VCS stamping, so that two builds of one
# commit with the same Go release and C compiler are byte-identical.
#
# Environment:
#   KEEP_PLATFORMS   platforms to build (default "linux/amd64 linux/arm64")
#   KEEP_CGO         1 (default): build with cgo, which PKCS#11 HSMs need;
#                    0: static binaries without PKCS#11, named
#                    keep-OS-ARCH-nopkcs11 so that none ships unnoticed
#   CC_linux_arm64   C cross compiler for linux/arm64 with cgo (default
#                    aarch64-linux-gnu-gcc, Debian: gcc-aarch64-linux-gnu);
#                    likewise CC_linux_amd64 (x86_64-linux-gnu-gcc)
#   SOURCE_DATE_EPOCH the build date, in seconds since 1970 (default: the
#                    commit time)
#   KEEP_COMMIT      the commit (default: git rev-parse HEAD); outside a git
#                    checkout pass VERSION and SOURCE_DATE_EPOCH too
set -euo pipefail

out=dist
if [ "${1:-}" = "-o" ]; then
  [ $# -ge 2 ] || { echo "usage: $0 [-o DIR] [VERSION]" >&2; exit 2; }
  out=$2
  shift 2
fi
[ $# -le 1 ] || { echo "usage: $0 [-o DIR] [VERSION]" >&2; exit 2; }
version=${1:-}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."

# Outside a git checkout (a source archive, a container build context
# without .git) the caller names what git would tell.
ingit=
if git rev-parse --verify -q HEAD >/dev/null 2>&1; then
  ingit=1
fi
needgit() {
  [ -n "$ingit" ] && return
  echo "build.sh: not in a git checkout: pass VERSION and set SOURCE_DATE_EPOCH (and KEEP_COMMIT)" >&2
  exit 1
}
commit=${KEEP_COMMIT:-}
if [ -z "$commit" ] && [ -n "$ingit" ]; then
  commit=$(git rev-parse HEAD)
fi
epoch=${SOURCE_DATE_EPOCH:-}
if [ -z "$epoch" ]; then
  needgit
  epoch=$(git log -1 --format=%ct HEAD)
fi
date=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
if [ -z "$version" ]; then
  needgit
  version=$(git describe --tags --exact-match HEAD 2>/dev/null ||
    date -u -d "@$(git log -1 --format=%ct HEAD)" +%Y-%m-%dT%H-%M-%SZ)
  if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    version+=-dirty
  fi
fi

pkg=github.com/keep-kms/keep/internal/buildinfo
ldflags="-s -w -X $pkg.Version=$version -X $pkg.Commit=$commit -X $pkg.Date=$date"
cgo=${KEEP_CGO:-1}
hostarch=$(go env GOHOSTARCH)
built=()

for platform in ${KEEP_PLATFORMS:-linux/amd64 linux/arm64}; do
  goos=${platform%/*}
  goarch=${platform#*/}
  name=keep-$goos-$goarch
  cc=
  if [ "$cgo" = 1 ]; then
    if [ "$goos" != "$(go env GOHOSTOS)" ] || [ "$goarch" != "$hostarch" ]; then
      # Cross-compiling with cgo needs a C compiler for the target.
      var=CC_${goos}_${goarch}
      case $goarch in
        amd64) triple=x86_64-linux-gnu ;;
        arm64) triple=aarch64-linux-gnu ;;
        *) triple=$goarch-linux-gnu ;;
      esac
      cc=${!var:-$triple-gcc}
      if ! command -v "$cc" >/dev/null; then
        echo "build.sh: $platform with cgo (PKCS#11) needs the C cross compiler $cc" >&2
        echo "  (Debian: apt-get install gcc-$triple), or set $var;" >&2
        echo "  KEEP_CGO=0 builds static binaries without PKCS#11 support instead" >&2
        exit 1
      fi
    fi
  else
    name+=-nopkcs11
  fi
  echo "build.sh: $name $version ($commit, $date)" >&2
  env GOOS="$goos" GOARCH="$goarch" CGO_ENABLED="$cgo" ${cc:+CC="$cc"} \
    go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$out/$name" ./cmd/keep
  built+=("$name")
done

# Only this run's binaries: DIR may hold others from earlier runs.
(cd "$out" && sha256sum "${built[@]}" >SHA256SUMS)

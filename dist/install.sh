#!/bin/sh
# install.sh: installs a prebuilt alipaylife release binary (Linux or macOS, x86_64 or aarch64).
# Downloads SHA256SUMS and alipaylife-<version>-<target>.tar.gz, checks the archive's SHA-256,
# and only then extracts it and copies the binary to PREFIX/bin (default ~/.local/bin).
#
#   sh install.sh [--version X.Y.Z] [--prefix DIR] [--base-url URL]
#
# Environment (flags win): ALIPAYLIFE_VERSION, ALIPAYLIFE_PREFIX, ALIPAYLIFE_BASE_URL.
# Without a version, the archive for this machine is the one SHA256SUMS names at the base URL
# (default: the latest GitHub release). With a version, the default base URL is that release's tag.
# POSIX sh; needs curl or wget, sha256sum or shasum, tar and gzip.
set -eu

REPO_URL=https://github.com/alipaylife/alipaylife
version=${ALIPAYLIFE_VERSION:-}
prefix=${ALIPAYLIFE_PREFIX:-}
base_url=${ALIPAYLIFE_BASE_URL:-}

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage() {
    cat <<'USAGE'
Usage: sh install.sh [--version X.Y.Z] [--prefix DIR] [--base-url URL]
  --version   release to install (default: the one SHA256SUMS at the base URL names)
  --prefix    installs PREFIX/bin/alipaylife (default: ~/.local, i.e. ~/.local/bin/alipaylife)
  --base-url  where SHA256SUMS and the archives are (default: the GitHub release)
Environment: ALIPAYLIFE_VERSION, ALIPAYLIFE_PREFIX, ALIPAYLIFE_BASE_URL (flags win).
USAGE
}

while [ $# -gt 0 ]; do
    case $1 in
        --version) [ $# -ge 2 ] || die "--version needs a value"; version=$2; shift 2 ;;
        --version=*) version=${1#*=}; shift ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --base-url) [ $# -ge 2 ] || die "--base-url needs a value"; base_url=$2; shift 2 ;;
        --base-url=*) base_url=${1#*=}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (try --help)" ;;
    esac
done

version=${version#v}
case $version in
    *[!0-9A-Za-z.+-]*) die "bad version '$version'" ;;
esac
if [ -z "$prefix" ]; then
    [ -n "${HOME:-}" ] || die "HOME is not set; pass --prefix DIR"
    prefix=$HOME/.local
fi
if [ -z "$base_url" ]; then
    if [ -n "$version" ]; then base_url=$REPO_URL/releases/download/v$version
    else base_url=$REPO_URL/releases/latest/download; fi
fi
base_url=${base_url%/}

# --- this machine's target ---
case $(uname -s) in
    Linux) os=unknown-linux-musl ;;
    Darwin) os=apple-darwin ;;
    *) die "unsupported OS '$(uname -s)' (prebuilt binaries exist for Linux and macOS)" ;;
esac
case $(uname -m) in
    x86_64 | amd64) cpu=x86_64 ;;
    aarch64 | arm64) cpu=aarch64 ;;
    *) die "unsupported CPU '$(uname -m)' (prebuilt binaries exist for x86_64 and aarch64)" ;;
esac
# An x86_64 shell under Rosetta 2 on Apple silicon: take the native binary.
if [ "$os" = apple-darwin ] && [ "$cpu" = x86_64 ] &&
    [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || echo 0)" = 1 ]; then
    cpu=aarch64
fi
target=$cpu-$os

# --- tools ---
if command -v curl >/dev/null 2>&1; then
    fetch() { curl -fsSL --retry 3 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
    fetch() { wget -q --tries=3 -O "$2" "$1"; }
else
    die "neither curl nor wget found"
fi
if command -v sha256sum >/dev/null 2>&1; then
    sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
    die "neither sha256sum nor shasum found"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/alipaylife-install.XXXXXX") || die "cannot create a temp dir"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' HUP INT TERM

# --- SHA256SUMS names the archive and its hash ---
say "downloading $base_url/SHA256SUMS"
fetch "$base_url/SHA256SUMS" "$tmp/SHA256SUMS" || die "cannot download $base_url/SHA256SUMS"
if [ -n "$version" ]; then
    name=alipaylife-$version-$target.tar.gz
    line=$(awk -v n="$name" '$2 == n || $2 == "*" n' "$tmp/SHA256SUMS")
else
    line=$(awk -v t="-$target.tar.gz" '{ f = $2; sub(/^\*/, "", f) }
        f ~ /^alipaylife-[-_.+0-9A-Za-z]+$/ && substr(f, length(f) - length(t) + 1) == t' "$tmp/SHA256SUMS")
fi
[ -n "$line" ] || die "SHA256SUMS at $base_url has no archive for $target${version:+ version $version}"
[ "$(printf '%s\n' "$line" | wc -l)" -eq 1 ] || die "SHA256SUMS lists several archives for $target; pass --version"
expected=$(printf '%s\n' "$line" | awk '{ print $1 }')
name=$(printf '%s\n' "$line" | awk '{ f = $2; sub(/^\*/, "", f); print f }')
case $expected in
    *[!0-9a-f]*) die "malformed SHA256SUMS line: $line" ;;
esac
[ ${#expected} -eq 64 ] || die "malformed SHA256SUMS line: $line"

# --- download and verify before anything else touches the archive ---
say "downloading $base_url/$name"
fetch "$base_url/$name" "$tmp/$name" || die "cannot download $base_url/$name"
actual=$(sha256 "$tmp/$name")
if [ "$actual" != "$expected" ]; then
    die "checksum mismatch for $name (expected $expected, got $actual); nothing installed"
fi
say "verified SHA-256 $actual"

mkdir "$tmp/x"
tar -xzf "$tmp/$name" -C "$tmp/x" || die "cannot extract $name"
bin=$tmp/x/${name%.tar.gz}/alipaylife
if [ ! -f "$bin" ] || [ -L "$bin" ]; then die "$name does not contain ${name%.tar.gz}/alipaylife"; fi

# --- install: copy beside the destination, then rename over it ---
bindir=$prefix/bin
mkdir -p "$bindir" || die "cannot create $bindir"
new=$bindir/.alipaylife.new.$$
if ! { cp "$bin" "$new" && chmod 755 "$new" && mv -f "$new" "$bindir/alipaylife"; }; then
    rm -f "$new"
    die "cannot install into $bindir"
fi
say "installed ${name%.tar.gz} to $bindir/alipaylife"
case :${PATH:-}: in
    *:"$bindir":*) ;;
    *) say "note: $bindir is not on PATH; add it, e.g. export PATH=\"$bindir:\$PATH\"" ;;
esac

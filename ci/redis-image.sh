#!/usr/bin/env bash
# Builds a local Redis image from Debian's redis-server binary, with no container registry:
# a rootfs holding redis-server (and redis-cli), every shared library they load, the dynamic
# loader, a minimal /etc/passwd and /etc/group, an empty /data and /tmp, imported with
# `docker import`. The tag comes from the installed version: mt5-redis:<version>-debian.
#
# Usage: ci/redis-image.sh [--force]
#   --force   rebuild even when the image already exists.
# Progress goes to stderr; the image name is printed to stdout as the last line, so
# `MT5_REDIS_IMAGE=$(ci/redis-image.sh)` works.
set -euo pipefail

log() { printf 'redis-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  *) die "unknown argument '$1' (usage: ci/redis-image.sh [--force])" ;;
esac

command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "'docker info' fails: start the Docker daemon first (dockerd)"

find_redis_server() {
  local p
  p=$(command -v redis-server 2>/dev/null || true)
  for c in "$p" /usr/bin/redis-server /usr/sbin/redis-server /usr/local/bin/redis-server; do
    if [[ -n "$c" && -x "$c" ]]; then printf '%s\n' "$c"; return 0; fi
  done
  return 1
}

if ! server=$(find_redis_server); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "redis-server not found; installing Debian's redis-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null >&2
    apt-get install -y -qq redis-server redis-tools </dev/null >&2
    server=$(find_redis_server) || die "redis-server still not found after apt-get install"
  else
    die "redis-server not found: install it (apt-get install redis-server redis-tools)"
  fi
fi

# "Redis server v=7.0.15 sha=... " -> 7.0.15
version=$("$server" --version | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')
[[ -n "$version" ]] || die "cannot read the version from '$server --version'"
image="mt5-redis:${version}-debian"

if [[ $force -eq 0 ]] && docker image inspect "$image" >/dev/null 2>&1; then
  log "$image already exists; nothing to do (--force rebuilds it)"
  printf '%s\n' "$image"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mt5-redis-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

# A merged-/usr layout like Debian 12's: /bin, /sbin, /lib and /lib64 point into /usr, so
# libraries copied under either spelling of their path are found by the loader.
mkdir -p "$root"/usr/{bin,sbin,lib,lib64} "$root"/{etc,data,tmp,run,var/log,var/lib}
for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
chmod 1777 "$root/tmp"
chmod 0777 "$root/data"

# Copies a file, following symlinks, to the same path inside the rootfs (under /usr when the
# path starts with /bin, /sbin, /lib or /lib64, which are symlinks there).
copy_in() {
  local src=$1 dest=${2:-$1}
  case "$dest" in
    /usr/*) ;;
    /bin/* | /sbin/* | /lib/* | /lib64/*) dest="/usr$dest" ;;
  esac
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$src" "$root$dest"
}

# Every shared library a binary needs (ldd's resolved paths) and the dynamic loader.
copy_libs() {
  local bin=$1 line lib
  ldd "$bin" >/dev/null 2>&1 || die "ldd $bin failed: not a dynamic executable?"
  while read -r line; do
    case "$line" in
      *"=> not found"*) die "ldd $bin: missing library: $line" ;;
      *"=> /"*) lib=${line#*=> }; lib=${lib%% (*} ;;
      /*) lib=${line%% (*} ;;
      *) continue ;; # linux-vdso.so.1 and friends live in the kernel
    esac
    copy_in "$lib"
  done < <(ldd "$bin")
  # The loader named in the ELF header (PT_INTERP), should ldd have printed it differently.
  local interp
  interp=$(readelf -l "$bin" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p' || true)
  [[ -n "$interp" ]] && copy_in "$interp"
  return 0
}

real=$(readlink -f "$server")
log "packing $server (really $real), Redis $version"
# On Debian redis-server is a symlink to redis-check-rdb: the binary picks its mode from
# argv[0], so it must be called redis-server inside the image.
copy_in "$real" /usr/bin/redis-server
copy_libs "$real"
if cli=$(command -v redis-cli 2>/dev/null); then
  copy_in "$(readlink -f "$cli")" /usr/bin/redis-cli
  copy_libs "$(readlink -f "$cli")"
fi

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
redis:x:999:999:redis:/data:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
redis:x:999:
nogroup:x:65534:
GROUP
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
mkdir -p "$root/root"

tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$work/rootfs.tar" .
log "rootfs: $(du -h "$work/rootfs.tar" | cut -f1); importing as $image"
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'WORKDIR /data' \
  --change 'EXPOSE 6379' \
  --change 'CMD ["redis-server","--protected-mode","no"]' \
  --message "Debian's redis-server $version, packed by ci/redis-image.sh" \
  "$work/rootfs.tar" "$image" >&2
printf '%s\n' "$image"

#!/usr/bin/env bash
# stack/build.sh — build Quarry's buildpack stack image from Debian's mirror.
#
#   stack/build.sh [--force] [--suite SUITE] [--extra "PKG ..."] [NAME]
#        (default NAME: quarry-stack/bookworm:latest; default SUITE: the NAME's
#         repository when it is a Debian suite — bookworm, trixie, forky, sid —
#         else bookworm)
#
# debootstrap a minimal Debian SUITE (--variant=minbase) from the mirror this
# machine's apt uses, install what the built-in buildpacks need at build and run
# time (python3, python3-venv, python3-pip, nodejs, npm, ca-certificates, plus the
# --extra packages, e.g. a second python3.X and python3.X-venv), add
# the user `app` (uid 65000, no host account; home /app) and /usr/local/bin/quarry-entrypoint
# (sources /app/.profile.d/*.sh, then execs its arguments), drop apt's caches,
# then `docker import` the tree. No registry is needed. Runs as root. The host's
# own CAs (/usr/local/share/ca-certificates/*.crt) are trusted in the image too.
# If NAME already exists it says so and exits 0, unless --force.
set -euo pipefail

FORCE=0
NAME=quarry-stack/bookworm:latest
SUITE= EXTRA=
while [ $# -gt 0 ]; do
  case "$1" in
    --force) FORCE=1 ;;
    --suite) SUITE=${2:?--suite needs a suite}; shift ;;
    --extra) EXTRA=${2-}; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build.sh: unknown flag $1" >&2; exit 2 ;;
    *) NAME=$1 ;;
  esac
  shift
done
if [ -z "$SUITE" ]; then
  repo=${NAME#quarry-stack/}; repo=${repo%%:*}
  case "$repo" in bookworm|trixie|forky|sid) SUITE=$repo ;; *) SUITE=bookworm ;; esac
fi
case "$SUITE" in
  bookworm|trixie|forky|sid) ;;
  *) echo "build.sh: unknown suite $SUITE (bookworm, trixie, forky, sid)" >&2; exit 2 ;;
esac
case "$EXTRA" in *[!a-z0-9.+\ -]*) echo "build.sh: invalid --extra package list" >&2; exit 2 ;; esac

step() { echo "-----> $*"; }
indent() { sed -u 's/^/       /'; }
drop() { grep -v -E "$1" || true; }   # filter noise; an empty result is no error

[ "$(id -u)" = 0 ] || { echo "build.sh: must run as root (debootstrap, chroot)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "build.sh: the Docker engine does not answer (docker info)" >&2; exit 1; }

if [ "$FORCE" = 0 ] && docker image inspect "$NAME" >/dev/null 2>&1; then
  step "Stack image $NAME already exists (use --force to rebuild)"
  exit 0
fi

START=$(date +%s)

# The mirror apt uses here: the first URI serving suite SUITE (or, failing that,
# bookworm: the same mirror serves every suite), and the one serving its security
# suite (deb822 .sources files or one-line .list files).
apt_uri_for() { # SUITE
  local suite=$1 f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    case "$f" in
      *.sources)
        awk -v s="$suite" '
          /^[ \t]*$/ { if (u != "" && ok) { print u; exit } u = ""; ok = 0; next }
          /^URIs:/    { u = $2 }
          /^Suites:/  { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
          END         { if (u != "" && ok) print u }' "$f" ;;
      *)
        awk -v s="$suite" '
          $1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                        if ($(i+1) == s) { print $i; exit } }' "$f" ;;
    esac
  done | head -n1
}
MIRROR=$(apt_uri_for "$SUITE"); MIRROR=${MIRROR:-$(apt_uri_for bookworm)}; MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=$(apt_uri_for "$SUITE-security"); SECURITY=${SECURITY:-$(apt_uri_for bookworm-security)}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

if ! command -v debootstrap >/dev/null; then
  step "Installing debootstrap"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } 2>&1 \
    | drop '^(Selecting previously|Preparing to unpack|Unpacking|Setting up|\(Reading database|debconf: delaying)' | indent
fi

WORK=$(mktemp -d /tmp/quarry-stack.XXXXXX)
ROOT=$WORK/rootfs
cleanup() {
  mountpoint -q "$ROOT/proc" 2>/dev/null && umount -l "$ROOT/proc"
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# debootstrap knows a newer suite by the script of sid (they are one script).
SCRIPT=/usr/share/debootstrap/scripts/$SUITE
[ -e "$SCRIPT" ] || SCRIPT=/usr/share/debootstrap/scripts/sid
step "debootstrap --variant=minbase $SUITE from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" "$SCRIPT" 2>&1 | drop '^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) ' | indent

# Stable suites get their updates and security suites; testing and sid are one suite.
case "$SUITE" in
  bookworm|trixie) SOURCES="deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main" ;;
  *) SOURCES="deb $MIRROR $SUITE main" ;;
esac
step "Configuring apt ($(echo "$SOURCES" | awk '{print $3}' | paste -sd' '); no docs, no man pages)"
echo "$SOURCES" >"$ROOT/etc/apt/sources.list"
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/quarry-nodoc" <<'NODOC'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
NODOC
cat >"$ROOT/etc/apt/apt.conf.d/quarry-minimal" <<'APTCONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
APTCONF
case "$SUITE" in forky|sid)
  # Testing and unstable Release files are valid for a week only: a mirror
  # snapshot older than that would refuse every update. Stable suites keep the check.
  echo 'Acquire::Check-Valid-Until "false";' >>"$ROOT/etc/apt/apt.conf.d/quarry-minimal" ;;
esac
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"; chmod +x "$ROOT/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount -t proc proc "$ROOT/proc"

# A host behind a TLS-inspecting proxy trusts a local CA: so must builds (pip, npm).
# ca-certificates' postinst adds these to /etc/ssl/certs/ca-certificates.crt.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  step "Trusting the host's local CA certificates: $(cd /usr/local/share/ca-certificates && echo *.crt)"
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
fi

PACKAGES="python3 python3-venv python3-pip nodejs npm ca-certificates${EXTRA:+ $EXTRA}"
step "Installing $PACKAGES"
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PACKAGES="$PACKAGES" \
  /bin/sh -c 'apt-get update -qq && apt-get upgrade -y -qq && apt-get install -y -qq $PACKAGES && echo "$(dpkg-query -f . -W | wc -c) packages installed"' \
  2>&1 | drop '^(Get:|Selecting previously|Preparing to unpack|Unpacking|Setting up|Processing triggers|\(Reading database|debconf: delaying|E: Can not write log|update-alternatives: |$|Current default time zone|Local time is now|Universal Time is now|Run .dpkg-reconfigure tzdata)' | indent

step "Adding user app (uid 65000, no host account; home /app) and /usr/local/bin/quarry-entrypoint"
chroot "$ROOT" useradd --uid 65000 --user-group --home-dir /app --create-home --shell /bin/bash app
cat >"$ROOT/usr/local/bin/quarry-entrypoint" <<'ENTRY'
#!/bin/sh
# quarry-entrypoint — what a Heroku dyno does before a process: source every
# /app/.profile.d/*.sh a buildpack left (PATH for .venv, node_modules/.bin, …),
# then run the command given as arguments.
for f in /app/.profile.d/*.sh; do
  [ -r "$f" ] && . "$f"
done
exec "$@"
ENTRY
chmod 755 "$ROOT/usr/local/bin/quarry-entrypoint"

step "Cleaning apt caches"
umount "$ROOT/proc"
chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/debconf/*-old \
       "$ROOT"/var/log/* "$ROOT"/tmp/* "$ROOT"/root/.cache "$ROOT/usr/sbin/policy-rc.d"
: >"$ROOT/etc/resolv.conf"
versions=$(chroot "$ROOT" /bin/sh -c 'printf "python %s, node %s, npm %s" "$(python3 -c "import platform; print(platform.python_version())")" "$(node --version)" "$(npm --version 2>/dev/null)"')
rm -rf "$ROOT/root/.npm" "$ROOT/tmp/"*
echo "       $versions"

step "docker import → $NAME"
old=$(docker image inspect -f '{{.Id}}' "$NAME" 2>/dev/null || true)
import_rootfs() { tar --numeric-owner -C "$ROOT" -c . | docker import --change 'ENV LANG=C.UTF-8' -m "quarry stack: debian $SUITE minbase, $versions" - "$NAME"; }
for try in 1 2 3; do            # an engine that restarts mid-import breaks the pipe: wait, retry
  if import_rootfs 2>&1 | indent; then break; fi
  [ "$try" = 3 ] && { echo "build.sh: docker import failed" >&2; exit 1; }
  echo "       import failed; waiting for the engine to answer, then retrying"
  for _ in $(seq 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
done
new=$(docker image inspect -f '{{.Id}}' "$NAME")
if [ -n "$old" ] && [ "$old" != "$new" ]; then
  docker rmi "$old" >/dev/null 2>&1 || echo "       (the previous image ${old#sha256:} is still in use; left in place)"
fi

SIZE=$(docker image inspect -f '{{.Size}}' "$NAME")
step "Stack image $NAME ready: $((SIZE / 1000000)) MB, built in $(( $(date +%s) - START ))s"

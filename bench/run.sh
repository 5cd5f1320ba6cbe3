#!/usr/bin/env bash
# Quarry's benchmark suite (`./run bench`; see bench/README.md).
#
# Real parts only, on 127.0.0.1: the release binary of Quarry with its own
# data dir and nginx, a private OpenSSH sshd as the transport baseline, the
# Docker engine, a private nginx for the router figure, criterion for the grid.
# Every process this script starts is tracked by PID and stopped on exit;
# every container and image it made (through Quarry or directly) is removed.
#
# Output: one markdown table on stdout, also target/bench/results.md and
# target/bench/results.json; logs and push transcripts under target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/bench
W=$OUT/work
LOGS=$OUT/logs
QUARRY=$ROOT/target/release/quarry
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C
mkdir -p "$OUT"

# Sizes and counts (bounded on purpose).
TRANSPORT_MB=50
TRANSPORT_RUNS=3
FIRST_DEPLOYS=3
REDEPLOYS=5
CP_RUNS=10
CONCURRENT=10
IDLE_APPS=100
# BENCH_ONLY=buildpack: only the push-to-live rows (one first deploy) and the
# buildpack rows beside them; the other sections are skipped.
BENCH_ONLY=${BENCH_ONLY:-}
case "$BENCH_ONLY" in
    '') ;;
    buildpack) FIRST_DEPLOYS=1 ;;
    *) printf 'bench: BENCH_ONLY=%s: only "buildpack" is known\n' "$BENCH_ONLY" >&2 && exit 1 ;;
esac

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'bench: %s\n' "$*" >&2
    exit 1
}

# ----- process bookkeeping -----------------------------------------------------

PIDS=()        # every background process we started, in start order
QPID=""        # quarry serve
SSHD_PID=""
FLOOR_CONTAINERS=()
FLOOR_IMAGES=()
INSTANCE=""
DATA=""
SLEEP_FD=""

track() { PIDS+=("$1"); }

# Forget a process we have waited for (its PID may be reused later).
untrack() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# Signal a process and its descendants (found by parent PID), children first.
kill_tree() {
    local pid=$1 sig=$2 child
    for child in $(pgrep -P "$pid" 2>/dev/null || true); do
        kill_tree "$child" "$sig"
    done
    kill "-$sig" "$pid" 2>/dev/null || true
}

# Wait up to $2 seconds for PID $1 to exit; 0 when it did.
wait_gone() {
    local pid=$1 i
    for ((i = 0; i < $2 * 20; i++)); do
        alive "$pid" || return 0
        sleep 0.05
    done
    return 1
}

stop_quarry() {
    [ -n "$QPID" ] && [ -n "$DATA" ] || return 0
    if alive "$QPID"; then
        kill -TERM "$QPID" 2>/dev/null || true
        if ! wait_gone "$QPID" 30; then
            log "quarry serve ($QPID) did not stop on SIGTERM within 30s; SIGKILL"
            kill -KILL "$QPID" 2>/dev/null || true
        fi
    fi
    wait "$QPID" 2>/dev/null || true
    # Its nginx, if the daemon could not stop it (pid file, and only if the
    # command line names our data dir).
    local npid
    npid=$(cat "$DATA/nginx/nginx.pid" 2>/dev/null || true)
    if [ -n "$npid" ] && tr '\0' ' ' < "/proc/$npid/cmdline" 2>/dev/null | grep -qF "$DATA/nginx"; then
        kill -QUIT "$npid" 2>/dev/null || true
        wait_gone "$npid" 10 || kill -KILL "$npid" 2>/dev/null || true
    fi
    QPID=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +eu
    local pid
    # Pushes and other helpers first (newest first), then the servers.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[$i]}
        case "$pid" in "$QPID" | "$SSHD_PID") continue ;; esac
        if alive "$pid"; then kill_tree "$pid" TERM; fi
    done
    stop_quarry
    # The router bench's nginx instances, should it have died midway.
    local pidfile
    for pidfile in "$W"/router/*/data/nginx/nginx.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if alive "$pid" && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$W/router/"; then
            kill -QUIT "$pid"
            wait_gone "$pid" 10 || kill -KILL "$pid"
        fi
    done
    if alive "$SSHD_PID"; then
        kill -TERM "$SSHD_PID"
        wait_gone "$SSHD_PID" 10 || kill -KILL "$SSHD_PID"
    fi
    for pid in "${PIDS[@]}"; do
        if alive "$pid"; then kill_tree "$pid" KILL; fi
        wait "$pid" 2>/dev/null
    done
    # What Quarry started for us (by its instance label), and the floor's.
    if [ -n "$INSTANCE" ] && command -v docker >/dev/null; then
        local ids
        ids=$(docker ps -aq --filter "label=quarry.instance=$INSTANCE" 2>/dev/null)
        [ -z "$ids" ] || docker rm -f -v $ids >/dev/null 2>&1
        docker network rm "quarry-$INSTANCE" >/dev/null 2>&1
        ids=$(docker images -q --filter "label=quarry.instance=$INSTANCE" 2>/dev/null | sort -u)
        [ -z "$ids" ] || docker rmi -f $ids >/dev/null 2>&1
    fi
    [ ${#FLOOR_CONTAINERS[@]} -eq 0 ] || docker rm -f "${FLOOR_CONTAINERS[@]}" >/dev/null 2>&1
    [ ${#FLOOR_IMAGES[@]} -eq 0 ] || docker rmi -f "${FLOOR_IMAGES[@]}" >/dev/null 2>&1
    [ -z "$SLEEP_FD" ] || exec {SLEEP_FD}>&-
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ----- small helpers -----------------------------------------------------------

# Microseconds since the epoch, without a fork.
now_us() { NOW=${EPOCHREALTIME/./}; }

# ms with three decimals from a microsecond difference.
ms() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

# A sleep that does not fork (read with a timeout on a FIFO nobody writes).
nap() { read -r -t "$1" -u "$SLEEP_FD" _ || true; }

sample() { printf '%s\t%s\n' "$1" "$2" >> "$OUT/samples.tsv"; }
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:--}" "${5:-1}" >> "$OUT/rows.tsv"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Field $1 (VmRSS, VmHWM) of the daemon, in KiB, into RSS.
read_rss() {
    local k v u
    RSS=0
    while read -r k v u; do
        if [ "$k" = "$1:" ]; then
            RSS=$v
            return
        fi
    done < "/proc/$QPID/status"
}
kib_to_mib() { printf '%d.%03d' $(($1 / 1024)) $((($1 % 1024) * 1000 / 1024)); }

# The same client settings everywhere. The key exchange is pinned to what
# Quarry (russh) negotiates, curve25519-sha256, so that OpenSSH's default
# post-quantum hybrid (sntrup761x25519, slower) does not tilt the baseline;
# both ends then use chacha20-poly1305.
SSH_OPTS=(-F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o LogLevel=ERROR -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=20
    -o KexAlgorithms=curve25519-sha256)

quarry_ssh() { timeout 60 ssh -i "$KEY" "${SSH_OPTS[@]}" -p "$QSSH" git@127.0.0.1 "$@"; }
sshd_ssh() { timeout 60 ssh -i "$KEY" "${SSH_OPTS[@]}" -p "$SPORT" root@127.0.0.1 "$@"; }
quarry_url() { echo "ssh://git@127.0.0.1:$QSSH/$1"; }
sshd_url() { echo "ssh://root@127.0.0.1:$SPORT$1"; }

# Copy stdin to stdout, each line prefixed by the ms since $1 (µs epoch).
stamp() {
    local t0=$1 line t
    while IFS= read -r line; do
        t=${EPOCHREALTIME/./}
        printf '%7d ms  %s\n' $(((t - t0) / 1000)) "$line"
    done
}

# git push in DIR to URL with REFSPEC, transcript (time-stamped) in OUT.log,
# "rc start_us end_us" in OUT.end when it is over. Starts at $NOW (µs).
push_to() {
    local out=$1 dir=$2 url=$3 refspec=$4 t0=$NOW rc
    set +e
    (cd "$dir" && GIT_SSH_COMMAND="ssh -i $KEY ${SSH_OPTS[*]}" timeout 300 git push "$url" "$refspec") 2>&1 |
        stamp "$t0" > "$out.log"
    rc=${PIPESTATUS[0]}
    set -e
    local t1=${EPOCHREALTIME/./}
    echo "$rc $t0 $t1" > "$out.end.tmp"
    mv "$out.end.tmp" "$out.end"
}

# The same in the background; its PID in BG.
push_bg() {
    rm -f "$1.end"
    push_to "$@" &
    BG=$!
    track "$BG"
}

# After push_to: rc and elapsed µs into PUSH_RC, PUSH_US.
push_result() {
    local rc t0 t1
    read -r rc t0 t1 < "$1.end"
    PUSH_RC=$rc
    PUSH_US=$((t1 - t0))
}

# The tiny app: busybox httpd serving www/index.html with TOKEN in it.
make_app_repo() {
    local dir=$1 token=$2
    rm -rf "$dir"
    mkdir -p "$dir/www"
    cat > "$dir/Dockerfile" <<'EOF'
FROM quarry-base/busybox:latest
COPY www /www
CMD ["/bin/sh", "-c", "exec httpd -f -p \"$PORT\" -h /www"]
EOF
    printf '<h1>%s</h1>\n' "$token" > "$dir/www/index.html"
    git -C "$dir" init -q -b main
    git -C "$dir" add -A
    git -C "$dir" -c user.name=bench -c user.email=bench@localhost commit -q -m "$token"
}

change_app_repo() {
    printf '<h1>%s</h1>\n' "$2" > "$1/www/index.html"
    git -C "$1" -c user.name=bench -c user.email=bench@localhost commit -q -am "$2"
}

# ----- setup -------------------------------------------------------------------

[ -n "${EPOCHREALTIME:-}" ] || die "bash 5 is needed (EPOCHREALTIME)"
for tool in git ssh ssh-keygen curl docker nginx python3 pgrep timeout; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done

# The baseline needs a real sshd. Installing it must not start a system one.
ensure_sshd() {
    [ -x /usr/sbin/sshd ] && return
    [ "$(id -u)" -eq 0 ] || die "openssh-server is missing; run as root or install it"
    log "installing openssh-server (for the OpenSSH baseline)"
    local policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy=/usr/sbin/policy-rc.d
    fi
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends openssh-server > /dev/null
    [ -z "$policy" ] || rm -f "$policy"
}
ensure_sshd

log "building quarry (release)"
cargo build --release --quiet
# Bench binaries are built here, run later as cargo runs them (`<bench
# binary> --bench`): a plain `cargo bench` at measuring time could wait
# minutes for the target dir lock while someone else builds in this checkout.
bench_bin() { # NAME: build benches/NAME.rs, print its executable
    local name=$1 bin
    bin=$(cargo bench --bench "$name" --no-run --quiet --message-format=json 2> "$OUT/$name-build.log" |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$name") || true
    [ -n "$bin" ] && [ -x "$bin" ] || {
        cat "$OUT/$name-build.log" >&2
        die "cargo bench --bench $name --no-run did not produce the bench binary"
    }
    printf '%s\n' "$bin"
}
if [ -z "$BENCH_ONLY" ]; then
    log "building the grid benchmark"
    GRID_BIN=$(bench_bin grid)
    log "building the router benchmark"
    ROUTER_BIN=$(bench_bin router)
    log "building the Docker-over-SSH benchmark"
    SSH_DOCKER_BIN=$(bench_bin ssh_docker)
fi

BENCH_START=${EPOCHREALTIME/./}
rm -rf "$W" "$LOGS"
mkdir -p "$W" "$LOGS"
rm -f "$OUT"/samples.tsv "$OUT"/rows.tsv "$OUT"/summary.tsv "$OUT"/meta.tsv "$OUT"/results.*
mkfifo "$W/nap.fifo"
exec {SLEEP_FD}<> "$W/nap.fifo"
RUN_ID=$(date +%s)-$$

{
    printf 'date\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'commit\t%s%s\n' "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')"
    printf 'cpus\t%s\n' "$(nproc)"
    printf 'kernel\t%s\n' "$(uname -r)"
    printf 'docker\t%s\n' "$(docker version --format '{{.Server.Version}}' 2>/dev/null)"
    printf 'nginx\t%s\n' "$(nginx -v 2>&1 | sed 's/.*\///')"
    printf 'openssh\t%s\n' "$(ssh -V 2>&1)"
    printf 'git\t%s\n' "$(git --version)"
} > "$OUT/meta.tsv"

KEY=$W/key
ssh-keygen -q -t ed25519 -N '' -C bench -f "$KEY"

# Private OpenSSH sshd: own config, host key and authorized keys.
SSHD_DIR=$W/sshd
mkdir -p "$SSHD_DIR" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$SSHD_DIR/host_ed25519"
cp "$KEY.pub" "$SSHD_DIR/authorized_keys"
SPORT=$(free_port)
cat > "$SSHD_DIR/sshd_config" <<EOF
Port $SPORT
ListenAddress 127.0.0.1
HostKey $SSHD_DIR/host_ed25519
PidFile $SSHD_DIR/sshd.pid
AuthorizedKeysFile $SSHD_DIR/authorized_keys
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
UseDNS no
# sshd runs commands through root's login shell; bash sources ~/.bashrc when
# started by sshd at SHLVL < 2 (pyenv init there costs ~0.5 s a command).
# The baseline measures sshd, not a dotfile.
SetEnv SHLVL=1
EOF
/usr/sbin/sshd -D -e -f "$SSHD_DIR/sshd_config" 2> "$LOGS/sshd.log" &
SSHD_PID=$!
track "$SSHD_PID"

# Quarry, fresh data dir, one admin key.
DATA=$W/data
mkdir -p "$DATA"
"$QUARRY" keys add bench --data "$DATA" --role admin < "$KEY.pub" > /dev/null
QUARRY_LOG=$LOGS/quarry-serve.log
"$QUARRY" serve --data "$DATA" --ssh 127.0.0.1:0 --http 127.0.0.1:0 --https 127.0.0.1:0 > "$QUARRY_LOG" 2>&1 &
QPID=$!
track "$QPID"
for ((i = 0; i < 600; i++)); do
    [ -s "$DATA/serve.json" ] && break
    alive "$QPID" || {
        cat "$QUARRY_LOG" >&2
        die "quarry serve exited"
    }
    sleep 0.1
done
[ -s "$DATA/serve.json" ] || die "quarry serve did not write serve.json within 60s"
read -r SERVE_PID QSSH QHTTP < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print(j["pid"], j["ssh"].rsplit(":", 1)[1], j["http"].rsplit(":", 1)[1])' "$DATA/serve.json")
INSTANCE=$(cat "$DATA/instance")
[ "$SERVE_PID" = "$QPID" ] || die "serve.json names pid $SERVE_PID, not $QPID"

for ((i = 0; i < 100; i++)); do
    sshd_ssh true 2> /dev/null && break
    alive "$SSHD_PID" || {
        cat "$LOGS/sshd.log" >&2
        die "sshd exited"
    }
    sleep 0.1
done
sshd_ssh true || die "cannot log in to the private sshd (see $LOGS/sshd.log)"
quarry_ssh apps > /dev/null || die "cannot run 'apps' on quarry"
log "quarry: ssh :$QSSH http :$QHTTP (pid $QPID); sshd :$SPORT (pid $SSHD_PID)"
negotiated() {
    "$@" 2>&1 | tr -d '\r' | sed -nE 's/.*kex: algorithm: (.*)/\1/p; s/.*server->client cipher: ([^ ]*).*/\1/p' | paste -sd' '
}
printf 'ssh_quarry\t%s\n' "$(negotiated timeout 60 ssh -v -i "$KEY" "${SSH_OPTS[@]}" -o LogLevel=DEBUG1 -p "$QSSH" git@127.0.0.1 apps)" >> "$OUT/meta.tsv"
printf 'ssh_sshd\t%s\n' "$(negotiated timeout 60 ssh -v -i "$KEY" "${SSH_OPTS[@]}" -o LogLevel=DEBUG1 -p "$SPORT" root@127.0.0.1 true)" >> "$OUT/meta.tsv"

# Table layout (the order of rows.tsv is the order of the table).
row push.first.live "push-to-live, first deploy (git push → new body via nginx)" ms push.first.floor
row push.first.floor "↳ floor: push over OpenSSH + docker build + docker run + first 200" ms
row push.re.live "push-to-live, redeploy (changed index.html) — headline" ms push.re.floor
row push.re.floor "↳ floor: push over OpenSSH + docker build + docker run + first 200" ms
row bp.re.live "push-to-live, buildpack (python, cached venv) redeploy, beside the Dockerfile redeploy" ms push.re.live
row bp.first.live "↳ push-to-live, buildpack (python) first deploy (pip install, dependency image built)" ms
row push.first.return "git push returns, first deploy" ms
row push.re.return "git push returns, redeploy (old container drained)" ms
row transport.quarry "push transport: ${TRANSPORT_MB} MB, rejected branch (Quarry SSH)" ms transport.sshd
row transport.sshd "↳ baseline: the same push to a bare repo via OpenSSH sshd" ms
row transport.local "↳ the same push to a local bare repo (git alone, no SSH)" ms
row cp.ps "control plane: ssh … ps APP" ms cp.true
row cp.apps "control plane: ssh … apps ($((IDLE_APPS + FIRST_DEPLOYS)) apps)" ms cp.true
row cp.true "↳ baseline: ssh … true via OpenSSH sshd" ms
row oneoff.run "one-off: ssh … run APP -- true, until it exits" ms oneoff.docker
row oneoff.docker "↳ baseline: docker run --rm IMAGE true" ms
row conc.total "concurrency: $CONCURRENT first deploys at once, wall time (baseline: $CONCURRENT × single first-deploy push)" ms push.first.return "$CONCURRENT"
row conc.single "↳ each of the $CONCURRENT pushes (launch → exit)" ms
row grid.place "grid: place 100k slices on 10k servers (criterion median)" ms
row grid.replace "grid: re-place after losing 10% of servers (criterion median)" ms
row route.add.1000 "router: route a new app with 1,000 routed (table write + read-back + the host answers)" ms route.reload.add.1000
row route.add.10000 "router: the same with 10,000 routed" ms route.reload.add.1000
row route.reload.add.1000 "↳ baseline: the reload path with 1,000 routed (vhost + nginx -t + HUP + answer)" ms
row route.redeploy.10000 "router: redeploy of one app among 10,000 (old+new, then new only, new answers)" ms
row route.rss.10000 "router: nginx RSS, master + workers, 10,000 routed apps" MiB
row route.load.failed "router: failed requests, 2 clients over 100 apps during 20 route changes" requests
row route.load.ok "↳ requests answered during them" requests
row docker.ssh "Docker API call over SSH (GET /_ping through Quarry's bridge, pooled connection)" ms docker.local
row docker.local "↳ baseline: the same call on the local socket" ms
row docker.ssh.fresh "↳ over SSH, new connection each (new channel: connect + version + ping)" ms
row tls.issue "HTTPS: certs:enable / certs:renew --force against pebble (order → HTTP-01 via nginx → cert served)" ms
row tls.https "HTTPS: new connection + GET through nginx (TLS 1.3 handshake, HTTP/2)" ms tls.http
row tls.http "↳ baseline: new connection + GET through nginx, plain HTTP" ms
row tls.alpn.issue "HTTPS: certs:renew --force by TLS-ALPN-01 (validator → stream front → responder)" ms tls.issue
row tls.front.https "HTTPS through the stream front (tls-alpn-01 on): new connection + GET" ms tls.front.socket
row tls.front.socket "↳ baseline: the same, straight to the TLS servers' socket (no front), same phase" ms
row tls.front.http "↳ plain HTTP in the same phase (drift check)" ms tls.http
row rss.idle "daemon RSS idle after start" MiB
row rss.apps "daemon RSS with $IDLE_APPS apps created" MiB
row rss.deploy "daemon peak RSS during a first deploy (VmRSS polled)" MiB
row rss.hwm.deploy "daemon VmHWM after the deploys" MiB
row rss.hwm.conc "daemon VmHWM after the $CONCURRENT concurrent deploys" MiB
row rss.hwm.transport "daemon VmHWM after the ${TRANSPORT_MB} MB pushes" MiB

# ----- 7a. footprint, idle and with 100 apps -----------------------------------
if [ -z "$BENCH_ONLY" ]; then

log "footprint: idle, then $IDLE_APPS apps"
sleep 1
read_rss VmRSS
sample rss.idle "$(kib_to_mib "$RSS")"
for ((i = 1; i <= IDLE_APPS; i++)); do
    quarry_ssh apps:create "$(printf 'idle-%03d' "$i")" > /dev/null 2>> "$LOGS/apps-create.log" ||
        die "apps:create idle-$i failed: $(tail -1 "$LOGS/apps-create.log")"
done
sleep 1
read_rss VmRSS
sample rss.apps "$(kib_to_mib "$RSS")"
fi # BENCH_ONLY

# ----- 2. push-to-live ----------------------------------------------------------

# Push REPO's main to APP and poll nginx until TOKEN is served. Samples
# KEY.live (push start → body) and KEY.return (push start → push exits).
# With POLL_RSS=1 the daemon's VmRSS is sampled too (peak in PEAK_RSS, KiB).
live_push() {
    local key=$1 dir=$2 app=$3 token=$4 out
    out=$LOGS/$key-$app-$(git -C "$dir" rev-parse --short HEAD)
    PEAK_RSS=0
    now_us
    local t0=$NOW live="" ended="" body
    push_bg "$out" "$dir" "$(quarry_url "$app")" main
    local pid=$BG deadline=$((t0 + 180000000))
    while :; do
        if [ -z "$live" ]; then
            body=$(curl -s --max-time 2 -H "Host: $app.localhost" "http://127.0.0.1:$QHTTP/" || true)
            if [[ $body == *"$token"* ]]; then live=${EPOCHREALTIME/./}; fi
        fi
        if [ "${POLL_RSS:-0}" = 1 ]; then
            read_rss VmRSS
            ((RSS > PEAK_RSS)) && PEAK_RSS=$RSS
        fi
        if [ -z "$ended" ] && [ -s "$out.end" ]; then
            ended=${EPOCHREALTIME/./}
            push_result "$out"
            if [ "$PUSH_RC" != 0 ]; then
                cat "$out.log" >&2
                die "push of $app was rejected (transcript $out.log)"
            fi
            deadline=$((ended + 10000000)) # live must follow within 10s
        fi
        [ -n "$live" ] && [ -n "$ended" ] && break
        now_us
        ((NOW < deadline)) || die "$app did not serve '$token' in time (transcript $out.log)"
        nap 0.025
    done
    wait "$pid" || true
    untrack "$pid"
    sample "$key.live" "$(ms $((live - t0)))"
    sample "$key.return" "$(ms "$PUSH_US")"
    LAST_LOG=$out.log
}

# The floor: the same tree, by hand, with nothing but OpenSSH, git and Docker.
floor_deploy() {
    local key=$1 dir=$2 bare=$3 token=$4 n=$5 out=$LOGS/$1-$5
    now_us
    local t0=$NOW
    push_to "$out" "$dir" "$(sshd_url "$bare")" main
    push_result "$out"
    [ "$PUSH_RC" = 0 ] || die "floor push failed: $(cat "$out.log")"
    now_us
    local t_push=$NOW
    local image=quarry-bench-floor:$RUN_ID-$n
    FLOOR_IMAGES+=("$image")
    git --git-dir="$bare" archive main |
        DOCKER_BUILDKIT=0 docker build -q -t "$image" - > "$out.build" 2>&1 ||
        die "floor build failed: $(cat "$out.build")"
    now_us
    local t_build=$NOW
    local cid
    cid=$(docker run -d --label "quarry-bench.run=$RUN_ID" -e PORT=5000 -p 127.0.0.1::5000 "$image")
    FLOOR_CONTAINERS+=("$cid")
    FLOOR_LAST=$cid
    local port
    port=$(docker port "$cid" 5000/tcp | head -1 | sed 's/.*://')
    local deadline=$((t0 + 120000000)) body
    while :; do
        body=$(curl -sf --max-time 2 "http://127.0.0.1:$port/" || true)
        [[ $body == *"$token"* ]] && break
        now_us
        ((NOW < deadline)) || die "floor container $cid did not serve '$token'"
        nap 0.025
    done
    now_us
    sample "$key" "$(ms $((NOW - t0)))"
    printf '%s %s: push %d ms, build %d ms, run + first 200 %d ms\n' "$key" "$n" \
        $(((t_push - t0) / 1000)) $(((t_build - t_push) / 1000)) $(((NOW - t_build) / 1000)) >> "$LOGS/floor-phases.log"
}

# Quarry and its floor take turns, so that both see the same load on a
# shared machine.
log "push-to-live: $FIRST_DEPLOYS first deploys, $REDEPLOYS redeploys; each beside its floor"
for ((i = 1; i <= FIRST_DEPLOYS; i++)); do
    app=live-$i
    make_app_repo "$W/$app" "first-$i-$RUN_ID"
    if [ "$i" = 1 ]; then POLL_RSS=1; else POLL_RSS=0; fi
    live_push push.first "$W/$app" "$app" "first-$i-$RUN_ID"
    [ "$i" != 1 ] || sample rss.deploy "$(kib_to_mib "$PEAK_RSS")"

    bare=$W/floor-$i.git
    git init -q --bare "$bare"
    make_app_repo "$W/floor-$i" "floor-first-$i-$RUN_ID"
    floor_deploy push.first.floor "$W/floor-$i" "$bare" "floor-first-$i-$RUN_ID" "first-$i"
    [ "$i" != 1 ] || FLOOR_PREV=$FLOOR_LAST
done
POLL_RSS=0
for ((i = 1; i <= REDEPLOYS; i++)); do
    change_app_repo "$W/live-1" "redeploy-$i-$RUN_ID"
    live_push push.re "$W/live-1" live-1 "redeploy-$i-$RUN_ID"

    change_app_repo "$W/floor-1" "floor-re-$i-$RUN_ID"
    floor_deploy push.re.floor "$W/floor-1" "$W/floor-1.git" "floor-re-$i-$RUN_ID" "re-$i"
    # The previous container goes, outside the clock (Quarry retires after the switch too).
    docker rm -f "$FLOOR_PREV" > /dev/null
    FLOOR_PREV=$FLOOR_LAST
done
read_rss VmHWM
sample rss.hwm.deploy "$(kib_to_mib "$RSS")"

# ----- 2b. buildpack redeploy from the cache -----------------------------------

# The python fixture (bottle from PyPI on the first push only), then code-only
# pushes: the venv comes from the build cache (no pip) and its image layer is
# reused. Side by side with the Dockerfile redeploy above, same load.
log "buildpack: python first deploy (stack built if missing), $REDEPLOYS cached redeploys"
"$QUARRY" stack build > "$LOGS/stack-build.log" 2>&1 || die "quarry stack build failed (see $LOGS/stack-build.log)"
rm -rf "$W/bp-1"
cp -r "$ROOT/tests/apps/py-app" "$W/bp-1"
printf 'bp-first-%s\n' "$RUN_ID" > "$W/bp-1/message.txt"
git -C "$W/bp-1" init -q -b main
git -C "$W/bp-1" add -A
git -C "$W/bp-1" -c user.name=bench -c user.email=bench@localhost commit -q -m first
live_push bp.first "$W/bp-1" bp-1 "bp-first-$RUN_ID"
for ((i = 1; i <= REDEPLOYS; i++)); do
    printf 'bp-re-%s-%s\n' "$i" "$RUN_ID" > "$W/bp-1/message.txt"
    git -C "$W/bp-1" -c user.name=bench -c user.email=bench@localhost commit -q -am "bp $i"
    live_push bp.re "$W/bp-1" bp-1 "bp-re-$i-$RUN_ID"
    grep -q "Python dependencies unchanged" "$LAST_LOG" || die "the buildpack redeploy ran pip (transcript $LAST_LOG)"
    grep -q "reusing the dependency image" "$LAST_LOG" || die "the buildpack redeploy rebuilt its dependency image (transcript $LAST_LOG)"
done

if [ -z "$BENCH_ONLY" ]; then
# ----- 3. control plane ---------------------------------------------------------

log "control plane: $CP_RUNS × ps, apps, ssh true"
timed() { # KEY command…
    local key=$1
    shift
    now_us
    local t0=$NOW
    "$@" > /dev/null 2>> "$LOGS/control.log" || die "$* failed: $(tail -1 "$LOGS/control.log")"
    now_us
    sample "$key" "$(ms $((NOW - t0)))"
}
for ((i = 1; i <= CP_RUNS; i++)); do
    timed cp.ps quarry_ssh ps live-1
    timed cp.apps quarry_ssh apps
    timed cp.true sshd_ssh true
done

# ----- 3b. one-off commands -----------------------------------------------------

log "one-off: $CP_RUNS × run APP -- true vs docker run --rm IMAGE true"
ONEOFF_IMAGE=$(quarry_ssh releases live-1 --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["image"])')
for ((i = 1; i <= CP_RUNS; i++)); do
    timed oneoff.run quarry_ssh run live-1 -- true
    timed oneoff.docker docker run --rm "$ONEOFF_IMAGE" true
done

# ----- 6. concurrency -----------------------------------------------------------

log "concurrency: $CONCURRENT first deploys at once"
for ((i = 1; i <= CONCURRENT; i++)); do
    make_app_repo "$W/conc-$i" "conc-$i-$RUN_ID"
done
now_us
CONC_T0=$NOW
CONC_PIDS=()
for ((i = 1; i <= CONCURRENT; i++)); do
    now_us
    push_bg "$LOGS/conc-$i" "$W/conc-$i" "$(quarry_url "conc-$i")" main
    CONC_PIDS+=("$BG")
done
for pid in "${CONC_PIDS[@]}"; do
    wait "$pid" || true
    untrack "$pid"
done
now_us
sample conc.total "$(ms $((NOW - CONC_T0)))"
for ((i = 1; i <= CONCURRENT; i++)); do
    push_result "$LOGS/conc-$i"
    [ "$PUSH_RC" = 0 ] || die "concurrent push conc-$i was rejected: $(cat "$LOGS/conc-$i.log")"
    sample conc.single "$(ms "$PUSH_US")"
    body=$(curl -s --max-time 5 -H "Host: conc-$i.localhost" "http://127.0.0.1:$QHTTP/" || true)
    [[ $body == *"conc-$i-$RUN_ID"* ]] || die "conc-$i does not serve its body after its push: $body"
done

read_rss VmHWM
sample rss.hwm.conc "$(kib_to_mib "$RSS")"

# ----- 1. push transport --------------------------------------------------------

log "push transport: $TRANSPORT_MB MB × $TRANSPORT_RUNS, Quarry and OpenSSH"
BIG=$W/big
mkdir -p "$BIG"
git -C "$BIG" init -q -b main
head -c "${TRANSPORT_MB}M" /dev/urandom > "$BIG/blob.bin"
git -C "$BIG" add blob.bin
git -C "$BIG" -c user.name=bench -c user.email=bench@localhost commit -q -m big
for ((i = 1; i <= TRANSPORT_RUNS; i++)); do
    now_us
    push_to "$LOGS/transport-quarry-$i" "$BIG" "$(quarry_url "tx-$i")" HEAD:refs/heads/bench
    push_result "$LOGS/transport-quarry-$i"
    [ "$PUSH_RC" != 0 ] && grep -q 'only main or master deploy' "$LOGS/transport-quarry-$i.log" ||
        die "the push to a branch other than main was not refused as expected: $(cat "$LOGS/transport-quarry-$i.log")"
    sample transport.quarry "$(ms "$PUSH_US")"

    git init -q --bare "$W/tx-$i.git"
    now_us
    push_to "$LOGS/transport-sshd-$i" "$BIG" "$(sshd_url "$W/tx-$i.git")" HEAD:refs/heads/bench
    push_result "$LOGS/transport-sshd-$i"
    [ "$PUSH_RC" = 0 ] || die "push to sshd failed: $(cat "$LOGS/transport-sshd-$i.log")"
    sample transport.sshd "$(ms "$PUSH_US")"

    git init -q --bare "$W/local-$i.git"
    now_us
    push_to "$LOGS/transport-local-$i" "$BIG" "$W/local-$i.git" HEAD:refs/heads/bench
    push_result "$LOGS/transport-local-$i"
    [ "$PUSH_RC" = 0 ] || die "local push failed: $(cat "$LOGS/transport-local-$i.log")"
    sample transport.local "$(ms "$PUSH_US")"
done
read_rss VmHWM
sample rss.hwm.transport "$(kib_to_mib "$RSS")"

stop_quarry

# ----- 5. router ----------------------------------------------------------------

# benches/router.rs drives Quarry's own Router on a private nginx per size.
log "router: 1,000 and 10,000 routed apps ($ROUTER_BIN --bench)"
mkdir -p "$W/router"
ROUTER_BENCH_DIR=$W/router timeout 600 "$ROUTER_BIN" --bench > "$LOGS/router.log" 2> "$LOGS/router.err" || {
    tail -20 "$LOGS/router.err" >&2
    die "the router bench failed (see $LOGS/router.err)"
}
sed -nE 's/^SAMPLE ([^ ]+) ([0-9.]+)$/\1\t\2/p' "$LOGS/router.log" >> "$OUT/samples.tsv"
grep -q '^SAMPLE route.load.failed ' "$LOGS/router.log" || die "the router bench printed no load figure"

# ----- 4. grid ------------------------------------------------------------------

log "grid: cargo bench --bench grid ($GRID_BIN --bench)"
timeout 300 "$GRID_BIN" --bench > "$LOGS/grid.log" 2>&1 || {
    tail -20 "$LOGS/grid.log" >&2
    die "cargo bench --bench grid failed"
}
grid_line() { # BENCH-name key
    local line
    line=$(grep "^BENCH $1 " "$LOGS/grid.log" | tail -1)
    [ -n "$line" ] || die "no 'BENCH $1' line in $LOGS/grid.log"
    local median iters
    median=$(sed -E 's/.*median_ms=([0-9.]+).*/\1/' <<< "$line")
    iters=$(sed -E 's/.*iterations=([0-9]+).*/\1/' <<< "$line")
    printf '%s\t%s\t%s\n' "$2" "$iters" "$median" >> "$OUT/summary.tsv"
}
grid_line place_100k_slices_on_10k_servers grid.place
grid_line replace_after_losing_10pct_of_servers grid.replace

# ----- 4b. Docker API over SSH ---------------------------------------------------

log "docker over ssh: $SSH_DOCKER_BIN --bench (200 pings each way)"
timeout 300 "$SSH_DOCKER_BIN" --bench > "$LOGS/ssh-docker.log" 2>&1 || {
    tail -20 "$LOGS/ssh-docker.log" >&2
    die "cargo bench --bench ssh_docker failed"
}
ssh_docker_line() { # BENCH-name key
    local line
    line=$(grep "^BENCH $1 " "$LOGS/ssh-docker.log" | tail -1)
    [ -n "$line" ] || die "no 'BENCH $1' line in $LOGS/ssh-docker.log"
    local median runs
    median=$(sed -E 's/.*median_us=([0-9.]+).*/\1/' <<< "$line")
    runs=$(sed -E 's/.*runs=([0-9]+).*/\1/' <<< "$line")
    printf '%s\t%s\t%s\n' "$2" "$runs" "$(python3 -c "print(round($median / 1000, 3))")" >> "$OUT/summary.tsv"
}
ssh_docker_line ssh_docker_ping_ssh docker.ssh
ssh_docker_line ssh_docker_ping_local docker.local
ssh_docker_line ssh_docker_connect_ping_ssh docker.ssh.fresh

# ----- 8. HTTPS -----------------------------------------------------------------

# Its own quarry serve, pebble and DNS (bench/tls.sh); samples into $OUT.
OUT="$OUT" LOGS="$LOGS" QUARRY="$QUARRY" bash "$ROOT/bench/tls.sh" || die "the HTTPS bench failed (see $LOGS/tls-*.log)"

fi # BENCH_ONLY: sections 3 to 8

# ----- report -------------------------------------------------------------------

now_us
printf 'elapsed_s\t%d\n' $(((NOW - BENCH_START) / 1000000)) >> "$OUT/meta.tsv"
python3 "$ROOT/bench/stats.py" render "$OUT"
log "results: $OUT/results.md, $OUT/results.json; transcripts and logs: $LOGS"

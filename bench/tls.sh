#!/usr/bin/env bash
# HTTPS rows of the bench: certificate issuance against a local ACME server
# (Debian's pebble, validating HTTP-01 through Quarry's nginx), and one
# request on a new connection through nginx over HTTPS (handshake included)
# vs plain HTTP, the same app, interleaved in the same run. Then the same
# server restarted with `tls.acme.challenge: tls-alpn-01`: issuance by
# TLS-ALPN-01 and the HTTPS request through the stream front (one more
# proxy hop), interleaved with the same request straight to the TLS
# servers' unix socket (curl writes the PROXY header), which skips the front.
#
# Run by bench/run.sh (rows into its $OUT), or alone:
#   QUARRY=target/release/quarry bench/tls.sh     # table in target/bench/tls/
# It starts its own quarry serve, pebble and pebble-challtestsrv on free
# loopback ports, stops them by PID on exit, and removes the app it made.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUARRY=${QUARRY:-$ROOT/target/release/quarry}
STANDALONE=0
if [ -z "${OUT:-}" ]; then
    OUT=$ROOT/target/bench/tls
    STANDALONE=1
    rm -rf "$OUT"
fi
T=$OUT/work/tls
LOGS=${LOGS:-$OUT/logs}
mkdir -p "$T" "$LOGS"
ISSUE_RUNS=${ISSUE_RUNS:-5}
LATENCY_RUNS=${LATENCY_RUNS:-30}
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf '==> %s\n' "$*" >&2; }
die() {
    log "tls bench: $*"
    exit 1
}
sample() { printf '%s\t%s\n' "$1" "$2" >> "$OUT/samples.tsv"; }
ms() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PIDS=()
APP=""
QPID=""
cleanup() {
    set +e
    if [ -n "$APP" ] && [ -n "${QSSH:-}" ]; then
        qssh apps:destroy "$APP" --force > /dev/null 2>&1
    fi
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[i]}" 2> /dev/null
    done
    for p in "${PIDS[@]}"; do
        for ((j = 0; j < 300; j++)); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    done
}
trap cleanup EXIT

for b in pebble pebble-challtestsrv openssl curl; do
    command -v "$b" > /dev/null || die "$b is missing (apt-get install pebble openssl curl)"
done
[ -x "$QUARRY" ] || die "$QUARRY is not built"

# pebble's own listener: a CA and a localhost certificate made here.
(
    cd "$T"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -out ca.pem -days 2 -subj "/CN=bench ca" 2> /dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem \
        -out cert.csr -subj /CN=localhost 2> /dev/null
    echo "subjectAltName=DNS:localhost,IP:127.0.0.1" > ext.cnf
    openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem \
        -days 2 -extfile ext.cnf 2> /dev/null
)

# Quarry with its own data dir and key.
KEY=$T/key
rm -f "$KEY" "$KEY.pub"
ssh-keygen -q -t ed25519 -N "" -f "$KEY"
DATA=$T/data
rm -rf "$DATA"
"$QUARRY" keys add bench --data "$DATA" --role admin < "$KEY.pub" > /dev/null
# serve_quarry SSH HTTP HTTPS: start quarry serve (0: a free port).
serve_quarry() {
    rm -f "$DATA/serve.json"
    "$QUARRY" serve --data "$DATA" --ssh "127.0.0.1:$1" --http "127.0.0.1:$2" --https "127.0.0.1:$3" \
        >> "$LOGS/tls-quarry.log" 2>&1 &
    QPID=$!
    PIDS+=("$QPID")
    for ((i = 0; i < 600; i++)); do [ -s "$DATA/serve.json" ] && break; sleep 0.1; done
    [ -s "$DATA/serve.json" ] || die "quarry serve did not start (see $LOGS/tls-quarry.log)"
}
serve_quarry 0 0 0
read -r QSSH QHTTP QHTTPS < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print(*(j[k].rsplit(":", 1)[1] for k in ("ssh", "http", "https")))' "$DATA/serve.json")
qssh() {
    timeout 120 ssh -i "$KEY" -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o LogLevel=ERROR -o BatchMode=yes -o IdentitiesOnly=yes -p "$QSSH" git@127.0.0.1 "$@"
}

DNS=$(free_port)
DNSM=$(free_port)
ACME=$(free_port)
MGMT=$(free_port)
cat > "$T/pebble.json" << EOF2
{"pebble": {"listenAddress": "127.0.0.1:$ACME", "managementListenAddress": "127.0.0.1:$MGMT",
  "certificate": "$T/cert.pem", "privateKey": "$T/key.pem", "httpPort": $QHTTP, "tlsPort": $QHTTPS,
  "ocspResponderURL": "", "externalAccountBindingRequired": false}}
EOF2
pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$DNS" -http01 "" \
    -https01 "" -tlsalpn01 "" -management "127.0.0.1:$DNSM" > "$LOGS/tls-challtestsrv.log" 2>&1 &
PIDS+=($!)
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
    pebble -config "$T/pebble.json" -dnsserver "127.0.0.1:$DNS" > "$LOGS/tls-pebble.log" 2>&1 &
PIDS+=($!)
for ((i = 0; i < 200; i++)); do
    curl -sS --max-time 2 --cacert "$T/ca.pem" "https://127.0.0.1:$ACME/dir" > /dev/null 2>&1 && break
    sleep 0.1
done
# redirect off: the same app answers on both schemes for the latency rows.
printf 'tls:\n  acme:\n    directory: https://127.0.0.1:%s/dir\n    ca_bundle: %s\n  redirect: false\n' \
    "$ACME" "$T/ca.pem" > "$DATA/config.yml"

APP=tlsbench-$RANDOM
REPO=$T/repo
rm -rf "$REPO"
mkdir -p "$REPO/www"
printf 'FROM quarry-base/busybox:latest\nCOPY www /www\nCMD ["/bin/sh", "-c", "exec httpd -f -p \\"$PORT\\" -h /www"]\n' > "$REPO/Dockerfile"
echo "<h1>tls</h1>" > "$REPO/www/index.html"
git -C "$REPO" init -q -b main
git -C "$REPO" add -A
git -C "$REPO" -c user.name=bench -c user.email=bench@localhost commit -q -m tls
(cd "$REPO" && GIT_SSH_COMMAND="ssh -i $KEY -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o IdentitiesOnly=yes" \
    timeout 300 git push -q "ssh://git@127.0.0.1:$QSSH/$APP" main) > "$LOGS/tls-push.log" 2>&1 ||
    die "push failed (see $LOGS/tls-push.log)"
HOST=$APP.localhost

log "tls: issuance against pebble, $ISSUE_RUNS runs"
for ((i = 1; i <= ISSUE_RUNS; i++)); do
    if [ "$i" = 1 ]; then cmd="certs:enable $APP"; else cmd="certs:renew $APP --force"; fi
    t0=${EPOCHREALTIME/./}
    qssh "$cmd" > "$LOGS/tls-issue-$i.log" 2>&1 || die "$cmd failed: $(tail -1 "$LOGS/tls-issue-$i.log")"
    t1=${EPOCHREALTIME/./}
    sample tls.issue "$(ms $((t1 - t0)))"
done
curl -sS --max-time 5 --cacert "$T/ca.pem" "https://127.0.0.1:$MGMT/roots/0" > "$T/root.pem"

log "tls: one request on a new connection, HTTPS vs HTTP, $LATENCY_RUNS runs each"
for ((i = 1; i <= LATENCY_RUNS; i++)); do
    s=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{time_total}' --cacert "$T/root.pem" \
        --resolve "$HOST:$QHTTPS:127.0.0.1" "https://$HOST:$QHTTPS/")
    [ "${s%% *}" = 200 ] || die "https answered $s"
    sample tls.https "$(python3 -c "print('%.3f' % (float('${s#* }') * 1000))")"
    p=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{time_total}' -H "Host: $HOST" \
        "http://127.0.0.1:$QHTTP/")
    [ "${p%% *}" = 200 ] || die "http answered $p"
    sample tls.http "$(python3 -c "print('%.3f' % (float('${p#* }') * 1000))")"
done

log "tls: restart with tls.acme.challenge: tls-alpn-01 (the stream front on the HTTPS port)"
printf 'tls:\n  acme:\n    directory: https://127.0.0.1:%s/dir\n    ca_bundle: %s\n    challenge: tls-alpn-01\n  redirect: false\n' \
    "$ACME" "$T/ca.pem" > "$DATA/config.yml"
kill "$QPID"
for ((j = 0; j < 300; j++)); do kill -0 "$QPID" 2> /dev/null || break; sleep 0.1; done
serve_quarry "$QSSH" "$QHTTP" "$QHTTPS"
grep -q ssl_preread "$DATA/nginx/stream.conf" || die "the stream front is not on (see $LOGS/tls-quarry.log)"
for ((i = 0; i < 300; i++)); do
    curl -sS --max-time 2 -o /dev/null --cacert "$T/root.pem" --resolve "$HOST:$QHTTPS:127.0.0.1" \
        "https://$HOST:$QHTTPS/" 2> /dev/null && break
    sleep 0.1
done

log "tls: issuance by TLS-ALPN-01 against pebble, $ISSUE_RUNS runs"
for ((i = 1; i <= ISSUE_RUNS; i++)); do
    t0=${EPOCHREALTIME/./}
    qssh "certs:renew $APP --force" > "$LOGS/tls-alpn-issue-$i.log" 2>&1 ||
        die "certs:renew (tls-alpn-01) failed: $(tail -1 "$LOGS/tls-alpn-issue-$i.log")"
    t1=${EPOCHREALTIME/./}
    sample tls.alpn.issue "$(ms $((t1 - t0)))"
done
grep -q '"acme-tls/1"' "$DATA/nginx/stream.log" || die "pebble's validator never reached the front"

log "tls: one request on a new connection through the stream front, $LATENCY_RUNS runs"
for ((i = 1; i <= LATENCY_RUNS; i++)); do
    s=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{time_total}' --cacert "$T/root.pem" \
        --resolve "$HOST:$QHTTPS:127.0.0.1" "https://$HOST:$QHTTPS/")
    [ "${s%% *}" = 200 ] || die "https through the front answered $s"
    sample tls.front.https "$(python3 -c "print('%.3f' % (float('${s#* }') * 1000))")"
    # The same request straight to the http servers' socket (the PROXY
    # header written by curl), skipping the front: the hop it adds.
    u=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{time_total}' --cacert "$T/root.pem" \
        --unix-socket "$DATA/nginx/https.sock" --haproxy-protocol "https://$HOST:$QHTTPS/")
    [ "${u%% *}" = 200 ] || die "https on the socket answered $u"
    sample tls.front.socket "$(python3 -c "print('%.3f' % (float('${u#* }') * 1000))")"
    p=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{time_total}' -H "Host: $HOST" \
        "http://127.0.0.1:$QHTTP/")
    [ "${p%% *}" = 200 ] || die "http answered $p"
    sample tls.front.http "$(python3 -c "print('%.3f' % (float('${p#* }') * 1000))")"
done

if [ "$STANDALONE" = 1 ]; then
    printf '%s\t%s\t%s\t%s\t%s\n' \
        tls.issue "HTTPS: certs:enable / certs:renew --force against pebble (order → HTTP-01 via nginx → cert served)" ms - 1 \
        tls.https "HTTPS: new connection + GET through nginx (TLS 1.3 handshake, HTTP/2)" ms tls.http 1 \
        tls.http "↳ baseline: new connection + GET through nginx, plain HTTP" ms - 1 \
        tls.alpn.issue "HTTPS: certs:renew --force by TLS-ALPN-01 (validator → stream front → responder)" ms tls.issue 1 \
        tls.front.https "HTTPS through the stream front (tls-alpn-01 on): new connection + GET" ms tls.front.socket 1 \
        tls.front.socket "↳ baseline: the same, straight to the TLS servers' socket (no front), same phase" ms - 1 \
        tls.front.http "↳ plain HTTP in the same phase (drift check)" ms tls.http 1 > "$OUT/rows.tsv"
    python3 "$ROOT/bench/stats.py" render "$OUT"
fi

#!/usr/bin/env bash
# stack/test-buildpacks.sh — end-to-end proof of the built-in buildpacks with
# real containers: for four sample apps made here (python+bottle, node+ms,
# static, Procfile) it runs detect in Quarry's order, compile in a throwaway
# container from the stack image (as user app, uid 1000), builds an app image,
# runs it with PORT set on a 127.0.0.1-published port and polls for the
# expected HTTP 200 body; then compiles a second time with the same cache and
# --network none (so a download could only fail), checks the cache line and
# that no download line appears, serves that build too, and prints times.
# Builds the stack image first if it is missing. Runs as root (chown to 1000).
# Everything it made (containers, images, temp dir) is removed by name at exit.
#
#   stack/test-buildpacks.sh [APP...]     APP: python node static procfile
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BUILDPACKS=$(dirname "$HERE")/buildpacks
STACK=${QUARRY_STACK:-quarry-stack/bookworm:latest}
ORDER="python node static procfile"          # Quarry's detect order
APPS=${*:-python node static procfile}
DEADLINE=30                                  # seconds for an app to answer
TAG=quarry-bptest-$$                         # prefix of every name made here

[ "$(id -u)" = 0 ] || { echo "test-buildpacks.sh: run as root" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "test-buildpacks.sh: the Docker engine does not answer" >&2; exit 1; }
"$HERE/build.sh" "$STACK"

TMP=$(mktemp -d /tmp/quarry-bptest.XXXXXX)
CONTAINERS=() IMAGES=() NETWORK=
cleanup() {
  local c i
  for c in "${CONTAINERS[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  for i in "${IMAGES[@]}"; do docker rmi -f "$i" >/dev/null 2>&1 || true; done
  [ -z "$NETWORK" ] || docker network rm "$NETWORK" >/dev/null 2>&1 || true
  rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Our own bridge network, as Quarry puts its containers on quarry-<instance>
# (and the engine's default bridge is then not needed).
docker network create "$TAG" >/dev/null; NETWORK=$TAG

step() { echo "-----> $*"; }
fail() { echo " !     FAILED: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# --- the sample apps ---------------------------------------------------------
make_app() { # NAME DIR → writes the app; sets PATH_ and BODY (expected answer)
  mkdir -p "$2"; cd "$2"
  case "$1" in
    python)
      echo 'bottle==0.13.4' >requirements.txt
      cat >app.py <<'PY'
import os
from bottle import route, run

@route("/")
def index():
    return "hello from python\n"

run(host="0.0.0.0", port=int(os.environ["PORT"]), quiet=True)
PY
      PATH_=/ BODY='hello from python' ;;
    node)
      cat >package.json <<'JSON'
{
  "name": "quarry-sample-node",
  "version": "1.0.0",
  "private": true,
  "scripts": { "start": "node server.js" },
  "dependencies": { "ms": "2.1.3" }
}
JSON
      # generated once with `npm install --package-lock-only` (plus the usual "resolved" URL)
      cat >package-lock.json <<'JSON'
{
  "name": "quarry-sample-node",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {
      "name": "quarry-sample-node",
      "version": "1.0.0",
      "dependencies": {
        "ms": "2.1.3"
      }
    },
    "node_modules/ms": {
      "version": "2.1.3",
      "resolved": "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz",
      "integrity": "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==",
      "license": "MIT"
    }
  }
}
JSON
      cat >server.js <<'JS'
const http = require("http");
const ms = require("ms");
http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain" });
  res.end(`hello from node ${ms(60000)}\n`);
}).listen(Number(process.env.PORT));
JS
      PATH_=/ BODY='hello from node 1m' ;;
    static)
      mkdir public; echo '<h1>hello from static</h1>' >public/index.html
      PATH_=/ BODY='<h1>hello from static</h1>' ;;
    procfile)
      echo 'web: python3 -m http.server $PORT' >Procfile
      echo 'hello from procfile' >hello.txt
      PATH_=/hello.txt BODY='hello from procfile' ;;
  esac
  cd - >/dev/null
}

# --- the steps Quarry's build stage will do ------------------------------------
detect() { # SRC → prints the buildpack name that applies first
  local bp
  for bp in $ORDER; do
    if "$BUILDPACKS/$bp/bin/detect" "$1" >/dev/null; then echo "$bp"; return 0; fi
  done
  return 1
}

compile() { # BP BUILD CACHE ENV LOG NETWORK
  local bp=$1 build=$2 cache=$3 env=$4 log=$5 net=$6
  local name=$TAG-compile-$RANDOM
  CONTAINERS+=("$name")
  chown -R 1000:1000 "$build" "$cache" "$env"
  docker run --rm --name "$name" --user 1000:1000 --network "$net" \
    -v "$build:/tmp/build" -v "$cache:/tmp/cache" -v "$env:/tmp/env:ro" \
    -v "$BUILDPACKS/$bp:/buildpack:ro" \
    "$STACK" /buildpack/bin/compile /tmp/build /tmp/cache /tmp/env 2>&1 | tee "$log"
}

web_command() { # BP BUILD → the web process: the Procfile's, else the release's default
  local cmd
  cmd=$(sed -n 's/^web:[[:space:]]*//p' "$2/Procfile" 2>/dev/null | head -n1)
  [ -n "$cmd" ] || cmd=$("$BUILDPACKS/$1/bin/release" "$2" | sed -n 's/^  web:[[:space:]]*//p')
  [ -n "$cmd" ] || return 1
  echo "$cmd"
}

build_image() { # CTX IMAGE — CTX/build is the compiled app
  cat >"$1/Dockerfile" <<DOCKERFILE
FROM $STACK
COPY --chown=app build /app
USER app
WORKDIR /app
ENTRYPOINT ["/usr/local/bin/quarry-entrypoint"]
DOCKERFILE
  IMAGES+=("$2")
  # The Docker API's /build (what Quarry calls) is the classic builder: so here too.
  DOCKER_BUILDKIT=0 docker build --force-rm -q -t "$2" "$1" >"$1/build.log" 2>&1 \
    || { sed 's/^/       | /' "$1/build.log"; fail "docker build of $2"; }
}

serve_and_check() { # IMAGE CMD PATH BODY
  local name=$TAG-web-$RANDOM addr body t0
  CONTAINERS+=("$name")
  docker run -d --name "$name" --network "$NETWORK" -e PORT=5000 -p 127.0.0.1::5000 "$1" /bin/sh -c "$2" >/dev/null
  addr=$(docker port "$name" 5000/tcp | head -n1)
  t0=$(date +%s)
  while :; do
    if body=$(curl -fsS --max-time 2 "http://$addr$3" 2>/dev/null); then break; fi
    if [ "$(docker inspect -f '{{.State.Running}}' "$name")" != true ]; then
      docker logs "$name" 2>&1 | sed 's/^/       | /'; fail "$name exited before answering"
    fi
    if [ $(( $(date +%s) - t0 )) -ge $DEADLINE ]; then
      docker logs "$name" 2>&1 | sed 's/^/       | /'; fail "$name gave no 200 on $3 within ${DEADLINE}s"
    fi
    sleep 0.2
  done
  [ "$body" = "$4" ] || fail "$name answered '$body', expected '$4'"
  echo "       HTTP 200 from http://$addr$3: $body ($(( $(date +%s) - t0 ))s to answer)"
  docker rm -f "$name" >/dev/null
}

# --- per app ---------------------------------------------------------------------
SUMMARY=() PASSED=0
for app in $APPS; do
  dir=$TMP/$app
  make_app "$app" "$dir/src"
  mkdir -p "$dir/cache" "$dir/env"
  echo 1 >"$dir/env/PIP_NO_COLOR"              # exercises ENV_DIR (harmless for every buildpack)

  bp=$(detect "$dir/src") || fail "$app: no buildpack applies"
  [ "$bp" = "$app" ] || fail "$app: detected as $bp"
  step "$app: detected by buildpack $bp ($("$BUILDPACKS/$bp/bin/detect" "$dir/src"))"

  times=()
  for round in 1 2; do
    ctx=$dir/ctx$round
    mkdir -p "$ctx"; cp -a "$dir/src" "$ctx/build"   # each push starts from a fresh checkout
    step "$app: compile #$round$([ $round = 2 ] && echo ' (same cache, --network none)')"
    t0=$(now)
    net=$NETWORK; [ $round = 1 ] || net=none   # round 2: a download could only fail
    compile "$bp" "$ctx/build" "$dir/cache" "$dir/env" "$ctx/compile.log" "$net"
    times+=("$(secs "$t0" "$(now)")")
    echo "       compile #$round took ${times[-1]}s"

    if [ $round = 2 ]; then
      case "$bp" in
        python|node)
          grep -q 'build cache used' "$ctx/compile.log" || fail "$app: second compile did not use the cache"
          if grep -E 'Downloading|Collecting|added [0-9]+ package|npm http fetch' "$ctx/compile.log"; then
            fail "$app: second compile downloaded something"
          fi
          echo "       cache used, nothing downloaded" ;;
      esac
    fi

    cmd=$(web_command "$bp" "$ctx/build") || fail "$app: no web process"
    image=$TAG-$app:v$round
    t0=$(now); build_image "$ctx" "$image"
    echo "       image $image built in $(secs "$t0" "$(now)")s; web: $cmd"
    serve_and_check "$image" "$cmd" "$PATH_" "$BODY"
    if [ "$bp" = python ] && [ $round = 1 ]; then      # .profile.d reached the process
      found=$(docker run --rm --name "$TAG-which-$RANDOM" --network none "$image" /bin/sh -c 'command -v python')
      [ "$found" = /app/.venv/bin/python ] || fail "$app: python on PATH is '$found'"
      echo "       PATH from .profile.d: python is $found"
    fi
    docker rmi "$image" >/dev/null
  done
  SUMMARY+=("$(printf '%-9s %-9s %8ss %8ss' "$app" "$bp" "${times[0]}" "${times[1]}")")
  PASSED=$((PASSED + 1))
done

step "Summary"
printf '       %-9s %-9s %9s %9s\n' app buildpack compile1 compile2
printf '       %s\n' "${SUMMARY[@]}"
echo "$PASSED passed, 0 failed"

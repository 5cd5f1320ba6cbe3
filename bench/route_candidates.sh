#!/usr/bin/env bash
# `nginx -t` time of the route config shapes weighed for issue #18, by app
# count: bench/route_candidates.sh 10000 today|literal|variable
#   today     one named upstream + one server per app (the reload path)
#   literal   proxy_pass http://127.0.0.1:PORT per server, no upstream block
#   variable  set $b ADDR; proxy_pass http://$b per server
# Writes under a fresh temp dir and only runs `nginx -t` (no nginx stays).
set -euo pipefail
N=${1:?app count} SHAPE=${2:?today|literal|variable}
export PATH="$PATH:/usr/sbin:/sbin"
R=$(mktemp -d)
trap 'rm -rf "$R"' EXIT
mkdir -p "$R/sites" "$R/tmp"
cat > "$R/nginx.conf" <<C
pid $R/nginx.pid; error_log $R/error.log warn; daemon off;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $R/tmp/body; proxy_temp_path $R/tmp/proxy;
 fastcgi_temp_path $R/tmp/f; uwsgi_temp_path $R/tmp/u; scgi_temp_path $R/tmp/s;
 server_names_hash_bucket_size 128; server_names_hash_max_size 65536;
 include $R/sites/*.conf; }
C
for ((i = 1; i <= N; i++)); do
    a=app-$i
    case $SHAPE in
    today) printf 'upstream quarry.%s.web { server 127.0.0.1:9 max_fails=1 fail_timeout=2s; keepalive 16; }\nserver { listen 127.0.0.1:18999; server_name %s.localhost; location / { proxy_pass http://quarry.%s.web; proxy_http_version 1.1; proxy_next_upstream error timeout http_502 http_503; } }\n' "$a" "$a" "$a" ;;
    literal) printf 'server { listen 127.0.0.1:18999; server_name %s.localhost; location / { proxy_pass http://127.0.0.1:%d; proxy_http_version 1.1; } }\n' "$a" $((10000 + i % 50000)) ;;
    variable) printf 'server { listen 127.0.0.1:18999; server_name %s.localhost; set $b 127.0.0.1:9; location / { proxy_pass http://$b; proxy_http_version 1.1; } }\n' "$a" ;;
    *) echo "unknown shape $SHAPE" >&2; exit 2 ;;
    esac
done > "$R/sites/all.conf"
s=${EPOCHREALTIME/./}
nginx -t -q -p "$R" -c "$R/nginx.conf" -e "$R/error.log"
e=${EPOCHREALTIME/./}
echo "$SHAPE $N: nginx -t $(((e - s) / 1000)) ms"

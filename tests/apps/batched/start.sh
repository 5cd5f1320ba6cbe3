#!/bin/sh
case "$(hostname)" in
    *-"${FAIL_INDEX:-none}") echo "replica $(hostname) refuses to start"; exit 1 ;;
esac
mkdir -p /www
echo "$(cat /app/version) $(hostname)" > /www/index.html
exec httpd -f -p "$PORT" -h /www

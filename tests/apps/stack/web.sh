#!/bin/sh
# Reports what this container sees: its host name, config, and the service
# it reached at $CACHE_HOST:$CACHE_PORT (fetched from inside the container).
mkdir -p /www
born=$(timeout 5 wget -qO- "http://$CACHE_HOST:$CACHE_PORT/born")
pong=$(timeout 5 wget -qO- "http://$ECHO_HOST:$ECHO_PORT/")
echo "host=$(hostname) greeting=$GREETING cache=$CACHE_HOST:$CACHE_PORT born=$born pong=$pong" > /www/index.html
exec httpd -f -p "$PORT" -h /www

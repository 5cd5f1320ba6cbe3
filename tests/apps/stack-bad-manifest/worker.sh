#!/bin/sh
# A worker: no port, just keeps running.
echo "worker started"
while true; do sleep 1; done

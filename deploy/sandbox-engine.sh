#!/bin/sh
# Entry point of the `sandbox-engine` service (docker-in-docker for sandbox containers).
# Sandbox containers that a grant lets onto the network may reach the internet, but never
# this engine's API, the compose network (PostgreSQL, Redis, the app) or any private range.
set -eu
dockerd-entrypoint.sh dockerd --host=tcp://0.0.0.0:2375 --tls=false --icc=false &
engine=$!
for _ in $(seq 120); do
  if iptables -nL DOCKER-USER >/dev/null 2>&1; then break; fi
  sleep 0.5
done
# Nothing from the sandbox bridge to this host (the engine's port included) ...
iptables -I INPUT -i docker0 -j DROP
# ... nor to private and link-local networks; DNS and the internet stay reachable.
for net in 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 169.254.0.0/16 100.64.0.0/10; do
  iptables -I DOCKER-USER -i docker0 -d "$net" -j DROP
done
iptables -I DOCKER-USER -i docker0 -p udp --dport 53 -j ACCEPT
wait "$engine"

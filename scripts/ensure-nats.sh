#!/bin/sh
# The several-heads tests start Debian's nats-server (JetStream on) in a temporary store; npm brings no server.
# Install it when it is missing and we can (root with apt-get); otherwise say how, and let those tests fail clearly.
set -e
command -v nats-server >/dev/null 2>&1 && exit 0
[ -x /usr/sbin/nats-server ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's nats-server for the several-heads tests..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
else
  echo "warning: nats-server is missing; the several-heads tests need it (apt-get install nats-server)." >&2
fi

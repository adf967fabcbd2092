#!/bin/sh
# The dashboard's browser test drives Debian's chromium through playwright-core, which downloads no browser.
# Install it when it is missing and we can (root with apt-get); otherwise say how, and let that test fail clearly.
set -e
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the dashboard's browser test..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "warning: /usr/bin/chromium is missing; the dashboard's browser test needs it (apt-get install chromium)." >&2
fi

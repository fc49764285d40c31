#!/usr/bin/env bash
# `make run`: the Anywhere Portal answering real SIP calls on this machine.
# Starts Kamailio on 127.0.0.1 (examples/kamailio/kamailio.cfg) as registrar/proxy,
# then `ivr serve` with the portal and the example directory. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

SIP_PORT=${SIP_PORT:-5060}
PORTAL_PORT=${PORTAL_PORT:-5080}
IVR=${IVR:-.venv/bin/ivr}
KAMAILIO=$(command -v kamailio || echo /usr/sbin/kamailio)
run_dir=$(mktemp -d)

stop() {
    trap - INT TERM EXIT
    [ -n "${serve_pid:-}" ] && kill -INT "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
    [ -n "${kamailio_pid:-}" ] && kill -TERM -- "-$kamailio_pid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$run_dir"
    echo "stopped."
}
trap stop INT TERM EXIT

setsid "$KAMAILIO" -f examples/kamailio/kamailio.cfg -A "SIP_PORT=$SIP_PORT" \
    -D -E -n 1 -m 64 -M 8 -Y "$run_dir" -P "$run_dir/kamailio.pid" -w "$run_dir" \
    >"$run_dir/kamailio.log" 2>&1 &
kamailio_pid=$!
sleep 1
if ! kill -0 "$kamailio_pid" 2>/dev/null; then
    cat "$run_dir/kamailio.log" >&2
    echo "kamailio did not start (is port $SIP_PORT taken? SIP_PORT=5070 make run)" >&2
    exit 1
fi

cat <<EOF

The Anywhere Portal answers at sip:portal@127.0.0.1:$SIP_PORT (Kamailio on loopback).
Demo callers (fictional): Erika +49 171 1234567 (PIN 4711), Max +49 30 1234567 (2580),
Hans +49 160 5550101 (1357). Call from baresip, presenting Erika's number:

  mkdir -p /tmp/bs && printf '<sip:+491711234567@127.0.0.1>;regint=0\n' > /tmp/bs/accounts
  baresip -f /tmp/bs        then type:  /dial sip:portal@127.0.0.1:$SIP_PORT
  keys: 4711#  then *11 (pull your call: a REFER to *11)

Logs below; Ctrl-C stops the portal and Kamailio.

EOF

"$IVR" --log-level info serve dialplans/anywhere_portal.yaml \
    --portal examples/portal/portal.yaml \
    --registrar "127.0.0.1:$SIP_PORT" --user portal --port "$PORTAL_PORT" &
serve_pid=$!
wait "$serve_pid"

#!/usr/bin/env bash
# `make run`: the Anywhere Portal answering real SIP calls on this machine, with a
# running desk call to pull and a number to call back. Everything on 127.0.0.1:
#
#   Kamailio   SIP_PORT (5060): registrar and proxy (examples/kamailio/kamailio.cfg),
#              dialog tracking, JSON-RPC on RPC_PORT (8090); keeps the portal's
#              P-Asserted-Identity (trusted source 127.0.0.1:PORTAL_PORT)
#   ivr serve  PORTAL_PORT (5080): the portal on Kamailio's call control
#              (examples/portal/kamailio.yaml), registered as "portal"
#   linphonec  the remote party of Erika's desk call: answers, speaks (espeak-ng)
#   SIPp       Erika's desk phone sip:1001 (examples/demo/desk.xml), in a call with
#              that remote party until a BYE ends it
#   linphonec  the call-back destination 030 5550199 (+49305550199), registered at
#              Kamailio under that number: answers, speaks; who called is printed
#   baresip    not started: a config directory for Erika's mobile (loopback, G.711),
#              `baresip -f DIR` as the printed instructions say
#
# Ctrl-C stops everything (by process group). Overridable: SIP_PORT, PORTAL_PORT,
# RPC_PORT (the other pieces take free ports), BARESIP_AUDIO (see below), READY_TIMEOUT
# (seconds each piece may take to start).
set -euo pipefail
cd "$(dirname "$0")/.."

SIP_PORT=${SIP_PORT:-5060}
PORTAL_PORT=${PORTAL_PORT:-5080}
RPC_PORT=${RPC_PORT:-8090}
READY_TIMEOUT=${READY_TIMEOUT:-20}
IVR=${IVR:-.venv/bin/ivr}
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ -x .venv/bin/python ] && PYTHON=.venv/bin/python
fi
KAMAILIO=$(command -v kamailio || echo /usr/sbin/kamailio)
LINPHONEC=$(command -v linphonec || true)
SIPP=$(command -v sipp || true)
CALLBACK_NUMBER=+49305550199 # keyed as 0305550199 (fictional, like every demo value)
root=$PWD

for tool in "$LINPHONEC" "$SIPP" "$(command -v espeak-ng || true)"; do
    if [ -z "$tool" ]; then
        echo "needs linphonec, sipp and espeak-ng (make system installs them)" >&2
        exit 1
    fi
done
if ! command -v "$IVR" >/dev/null; then
    echo "no $IVR: make venv first (or IVR=path/to/ivr)" >&2
    exit 1
fi
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/anywhere-portal.XXXXXX")

probe() { "$PYTHON" "$root/examples/demo/probe.py" "$@"; }

# --- stopping: every piece runs in its own process group (setsid), stopped by it --------
declare -A group=() fifo_fd=()
order=() # names in start order; stopped in reverse

ours() { # PID: still the process this script started (its child, not a reused PID)?
    local stat fields
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    read -r -a fields <<<"${stat##*) }" # state, parent, process group, ...
    [ "${fields[1]}" = $$ ]
}

stop_group() { # NAME SIGNAL GRACE_TENTHS: signal the group, then SIGKILL what is left
    local pid=${group[$1]:-} tenths=$3
    [ -n "$pid" ] || return 0
    if ours "$pid"; then
        kill "-$2" -- "-$pid" 2>/dev/null
        while ((tenths-- > 0)) && kill -0 -- "-$pid" 2>/dev/null; do sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    unset "group[$1]"
}

stopped=
stop() {
    set +e
    [ -n "$stopped" ] && return
    stopped=yes
    trap '' INT TERM
    local i name tenths
    for ((i = ${#order[@]} - 1; i >= 0; i--)); do
        name=${order[i]}
        case $name in
        portal) stop_group portal INT 50 ;; # de-REGISTER, BYE to its calls
        remote | callback)                  # "quit" ends linphone's calls with BYE
            { echo quit >&"${fifo_fd[$name]}"; } 2>/dev/null
            tenths=30
            while ((tenths-- > 0)) && ours "${group[$name]:-0}"; do sleep 0.1; done
            stop_group "$name" TERM 20
            ;;
        *) stop_group "$name" TERM 30 ;;
        esac
    done
    rm -rf "$run_dir"
    echo "stopped."
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# NAME LOG COMMAND...: start COMMAND in its own process group, output to LOG (- = here)
start() {
    local name=$1 log=$2
    shift 2
    if [ "$log" = - ]; then
        setsid "$@" </dev/null &
    else
        setsid "$@" >"$log" 2>&1 </dev/null &
    fi
    group[$name]=$!
    order+=("$name")
}

fail() { # WHAT [LOG]: why a piece did not come up (the end of its log)
    echo "$1 did not start${2:+; the end of $2:}" >&2
    [ -z "${2:-}" ] || tail -n 30 "$2" >&2 || true
    exit 1
}

# --- Kamailio ----------------------------------------------------------------------------
start kamailio "$run_dir/kamailio.log" "$KAMAILIO" -f examples/kamailio/kamailio.cfg \
    -A "SIP_PORT=$SIP_PORT" -A "RPC_PORT=$RPC_PORT" \
    -A "TRUSTED_SOURCE=\"127.0.0.1:$PORTAL_PORT\"" \
    -D -E -n 1 -m 64 -M 8 -Y "$run_dir" -P "$run_dir/kamailio.pid" -w "$run_dir"
if ! probe options "$SIP_PORT" --timeout "$READY_TIMEOUT" --pid "${group[kamailio]}" ||
    ! probe rpc "$RPC_PORT" --timeout 5 --pid "${group[kamailio]}"; then
    fail "kamailio (is port $SIP_PORT or $RPC_PORT taken? SIP_PORT=5070 RPC_PORT=8091 make run)" \
        "$run_dir/kamailio.log"
fi

# --- the portal --------------------------------------------------------------------------
portal_config=examples/portal/kamailio.yaml
if [ "$RPC_PORT" != 8090 ]; then # the example names Kamailio's default RPC port
    portal_config=$run_dir/portal.yaml
    sed -e "s/127\.0\.0\.1:8090/127.0.0.1:$RPC_PORT/" \
        -e "s|^directory: directory.yaml|directory: $root/examples/portal/directory.yaml|" \
        examples/portal/kamailio.yaml >"$portal_config"
fi
# its log stays on the terminal: what you watch
start portal - "$IVR" --log-level info serve dialplans/anywhere_portal.yaml \
    --portal "$portal_config" --registrar "127.0.0.1:$SIP_PORT" --user portal --port "$PORTAL_PORT"
probe registered "$RPC_PORT" portal --timeout "$READY_TIMEOUT" --pid "${group[portal]}" ||
    fail "the portal (its log is above; is port $PORTAL_PORT taken? PORTAL_PORT=5082 make run)"

# --- the two linphones: the desk call's remote party, the call-back destination ------------
read -r remote_port callback_port desk_port desk_media_port < <(probe ports 4)

# what they say (linphone loops it, 0.5 s of silence in between)
espeak-ng -v de -s 150 -w "$run_dir/remote.wav" "Hier spricht Ihr Gesprächspartner, \
Herr Beispiel. Sie hören mich jetzt auf Ihrem Handy: das Gespräch vom Tischtelefon \
wurde herangeholt."
espeak-ng -v de -s 150 -w "$run_dir/callback.wav" "Hier ist der Rückruf-Test unter null \
dreißig, fünf fünf fünf, null eins neun neun. Angezeigt wird Ihnen die Nummer des \
Anywhere Portals."

# NAME PORT USER DISPLAY WAV [register]: linphonec on 127.0.0.1:PORT in a HOME of its own,
# answering every call (-a) and sending WAV (files mode, [sound] hold_music), driven
# through a FIFO on its stdin (it quits on end of input)
start_linphone() {
    local name=$1 port=$2 user=$3 display=$4 wav=$5 register=${6:-}
    local home=$run_dir/$name var fd
    local env_args=(-u DISPLAY)
    for var in $(compgen -e); do
        case $var in XDG_* | PULSE*) env_args+=(-u "$var") ;; esac
    done
    # without this directory the core never starts (no database, no SIP listener)
    mkdir -p "$home/.local/share/linphone"
    {
        echo "[sip]"
        echo "sip_port=$port"
        echo "sip_tcp_port=0"
        echo "sip_tls_port=0"
        echo "bind_address=127.0.0.1"
        echo "use_ipv6=0"
        echo "guess_hostname=0"
        echo "contact=\"$display\" <sip:$user@127.0.0.1>"
        echo "auto_answer_replacing_calls=1"
        echo "inc_timeout=120"
        if [ -n "$register" ]; then
            echo "default_proxy=0"
            echo "[proxy_0]"
            echo "reg_proxy=<sip:127.0.0.1:$SIP_PORT;transport=udp>"
            echo "reg_identity=\"$display\" <sip:$user@127.0.0.1>"
            echo "reg_expires=3600"
            echo "reg_sendregister=1"
            echo "publish=0"
        fi
        echo "[rtp]"
        echo "audio_rtp_port=0"
        echo "bind_address=127.0.0.1"
        echo "[net]"
        echo "firewall_policy=0"
        echo "[video]"
        echo "enabled=0"
        echo "capture=0"
        echo "display=0"
        echo "[sound]"
        echo "echocancellation=0"
        echo "hold_music=$wav"
    } >"$home/linphonerc"
    mkfifo "$home/stdin"
    (cd "$home" && exec setsid env "${env_args[@]}" HOME="$home" TERM=dumb LANG=C.UTF-8 \
        "$LINPHONEC" -c "$home/linphonerc" -d 6 -l "$home/linphone.log" -a \
        <"$home/stdin" >"$home/console.log" 2>&1) &
    group[$name]=$!
    order+=("$name")
    exec {fd}>"$home/stdin"
    fifo_fd[$name]=$fd
    # no sound card: send the WAV, play nothing
    echo "soundcard use files" >&"$fd"
}

linphone_ready() { # NAME PORT
    local home=$run_dir/$1 tenths=$((READY_TIMEOUT * 10))
    until grep -q "Using wav files instead of soundcard" "$home/console.log" 2>/dev/null; do
        if ((tenths-- <= 0)) || ! kill -0 "${group[$1]}" 2>/dev/null; then
            fail "linphonec ($1)" "$home/console.log"
        fi
        sleep 0.1
    done
    probe options "$2" --timeout "$READY_TIMEOUT" --pid "${group[$1]}" ||
        fail "linphonec ($1)" "$home/linphone.log"
}

start_linphone remote "$remote_port" kunde "Gesprächspartner" "$run_dir/remote.wav"
start_linphone callback "$callback_port" "$CALLBACK_NUMBER" "Rückruf-Test" "$run_dir/callback.wav" \
    register
linphone_ready remote "$remote_port"
linphone_ready callback "$callback_port"
probe registered "$RPC_PORT" "$CALLBACK_NUMBER" --timeout "$READY_TIMEOUT" \
    --pid "${group[callback]}" || fail "the call-back destination's registration" \
    "$run_dir/callback/linphone.log"

# --- the desk phone 1001 calls the remote party, through Kamailio ------------------------
mkdir "$run_dir/desk"
(cd "$run_dir/desk" && exec setsid "$SIPP" -sf "$root/examples/demo/desk.xml" \
    "127.0.0.1:$SIP_PORT" -key ruri "sip:kunde@127.0.0.1:$remote_port" -m 1 \
    -i 127.0.0.1 -p "$desk_port" -mi 127.0.0.1 -mp "$desk_media_port" -rtp_echo \
    -nostdin -timeout 3700s -trace_msg -message_file "$run_dir/desk/messages.log" \
    -trace_err -error_file "$run_dir/desk/errors.log" \
    >"$run_dir/desk/sipp.log" 2>&1 </dev/null) &
group[desk]=$!
order+=(desk)
probe dialog "$RPC_PORT" sip:1001@ --timeout "$READY_TIMEOUT" --pid "${group[desk]}" ||
    fail "the desk call" "$run_dir/desk/errors.log"

# --- baresip as Erika's mobile, for you: loopback, G.711, the terminal UI ----------------
# BARESIP_AUDIO: alsa (the sound card, as baresip's own default config) or files (no
# sound card: the microphone is silence, what you hear goes to WAV files); default:
# alsa when there is a sound card
erika=$run_dir/erika
mkdir "$erika"
printf '<sip:+491711234567@127.0.0.1>;regint=0\n' >"$erika/accounts"
audio_mode=${BARESIP_AUDIO:-}
if [ -z "$audio_mode" ]; then
    audio_mode=files
    [ -e /dev/snd ] && audio_mode=alsa
fi
if [ "$audio_mode" = alsa ]; then
    audio="audio_player alsa,default
audio_source alsa,default
audio_alert alsa,default
module alsa.so"
    heard=""
else # aufile ends the call at the end of the file: 10 minutes of silence
    "$PYTHON" -c 'import sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
w.writeframes(bytes(2 * 8000 * 600))' "$erika/silence.wav"
    audio="audio_player none,none
audio_source aufile,$erika/silence.wav
audio_alert none,none
ausrc_srate 8000
ausrc_channels 1
module aufile.so
module sndfile.so
snd_path $erika"
    heard="
No sound card: baresip sends silence (for 10 minutes a call) and saves what you would
hear in $erika/dump-*-dec.wav (BARESIP_AUDIO=alsa: ALSA all the same).
"
fi
modules=/usr/lib/baresip/modules
[ -e "$modules/g711.so" ] || modules=/usr/lib/x86_64-linux-gnu/baresip/modules
cat >"$erika/config" <<BARESIP
poll_method epoll
net_interface 127.0.0.1
module_path $modules
module stdio.so
module g711.so
$audio
module_tmp account.so
module_app menu.so
BARESIP

# --- what happens, printed as it happens ---------------------------------------------------
start watch - "$PYTHON" examples/demo/probe.py watch --parent $$ \
    --desk "$run_dir/desk/messages.log" --remote "$run_dir/remote/linphone.log" \
    --callback "$run_dir/callback/linphone.log" --callback-console "$run_dir/callback/console.log" \
    --callback-number "030 5550199"

cat <<INSTRUCTIONS

The Anywhere Portal answers at sip:portal@127.0.0.1:$SIP_PORT (Kamailio on 127.0.0.1).
Running now (every name, number and PIN is a fictional demo value):
  - Erika's desk phone sip:1001 is in a call with a remote party who talks
    (Kamailio's dialog list, JSON-RPC on 127.0.0.1:$RPC_PORT, shows the call);
  - 030 5550199 is a phone that answers every call and talks.

Call the portal as Erika's mobile (+49 171 1234567, PIN 4711) from baresip, in another
terminal (that directory holds her account <sip:+491711234567@127.0.0.1>;regint=0 and
a config for 127.0.0.1):

  baresip -f $erika

then type in baresip (during a call each key goes out as DTMF, no Enter):

  /dial sip:portal@127.0.0.1:$SIP_PORT
        and Enter: the greeting, then "Bitte geben Sie Ihre Sprachbox-PIN ein ..."
  4711#
        the menu: "Um Ihr laufendes Gespräch heranzuholen, drücken Sie Stern eins eins ..."
  *11
        "Ihr Gespräch wird herangeholt", then you hear the remote party: "Hier spricht
        Ihr Gesprächspartner ..."; the desk call is gone (">>> desk phone 1001: BYE" below)
  b
        hang up (q quits baresip)

Call-back: /dial sip:portal@127.0.0.1:$SIP_PORT again, 4711#, then 0305550199#: "Sie
werden mit 0 3 0 5 5 5 0 1 9 9 verbunden", ringback, and 030 5550199 answers: "Hier ist
der Rückruf-Test ...". The From and P-Asserted-Identity it got, and the caller its
display (linphonec) shows, are printed below (">>> call-back destination"): "Anywhere
Portal Zentrale" <sip:+4930123454100@127.0.0.1>, the portal's name and public number,
not Erika's.
$heard
The desk call can be pulled once: Ctrl-C and make run again to pull it again.
Logs: the portal's below, the others in $run_dir. Ctrl-C stops everything.

INSTRUCTIONS

wait "${group[portal]}"

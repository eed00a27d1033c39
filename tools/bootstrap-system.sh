#!/usr/bin/env bash
# Installs the system packages the service and its tests use, through apt-get, when run as root
# on Debian/Ubuntu. Anywhere else it lists what is missing and stops, so nothing half-works.
set -euo pipefail

PACKAGES=(
  libportaudio2 portaudio19-dev        # sound-card capture (PortAudio), built against by native/
  pulseaudio pulseaudio-utils          # a sound server with a null sink for capture tests
  libasound2-plugins alsa-utils        # ALSA's 'pulse' device, through which PortAudio reaches it
  ffmpeg sox espeak-ng                 # RTP senders, audio conversion, scripted test calls
  prometheus                           # the real Prometheus server and promtool for metrics tests
  chromium chromium-driver             # a real headless browser for the agent page test
  baresip-core                         # a real SIP client that calls the SIP source in tests
  nats-server                          # NATS JetStream between capture nodes and ASR workers
  postgresql                           # the shared call store; tests start a private server
  openssl                              # a self-signed certificate for the workspace's TLS test
)
COMMANDS=(ffmpeg sox espeak-ng pulseaudio pactl paplay prometheus promtool chromium baresip
          nats-server openssl)

missing_cmds() {
  local c
  for c in "${COMMANDS[@]}"; do command -v "$c" >/dev/null 2>&1 || echo "$c"; done
  [ -e /usr/include/portaudio.h ] || echo "portaudio.h"
  ls /usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so >/dev/null 2>&1 || echo "alsa-pulse"
  # Debian keeps the server binaries off PATH, under /usr/lib/postgresql/<version>/bin.
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    || echo "postgresql (initdb)"
}

if [ -z "$(missing_cmds)" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing system packages: $(missing_cmds | tr '\n' ' ')" >&2
  echo "Install (as root): apt-get install ${PACKAGES[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
# Debian's prometheus package starts a server on :9090 where an init system runs it, and its
# postgresql package one on :5432; tests start their own on other ports, so running ones are
# harmless.
missing="$(missing_cmds)"
if [ -n "$missing" ]; then
  echo "Still missing after apt-get: $missing" >&2
  exit 1
fi

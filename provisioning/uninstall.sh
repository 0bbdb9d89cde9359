#!/usr/bin/env bash
# Remove Mood Melody. Settings (/etc/moodmelody) and state (/var/lib/moodmelody, the
# Spotify tokens) stay unless --purge, so a later install.sh picks them up again.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

PURGE=0

usage() {
    cat <<EOF
Usage: sudo $0 [options]

Stops and removes Mood Melody's units and $PREFIX. Keeps the settings and tokens
unless --purge.

  --purge       also remove /etc/moodmelody, /var/lib/moodmelody and the $SERVICE_USER user
  --prefix DIR  where it was installed (default $PREFIX)
  --root DIR    act on a staged tree (see install.sh --root)
  --image       in an image being built: stop nothing (the default without a running systemd)
  --dry-run     list every action, do nothing
  -h, --help    this text

raspotify, if installed with --with-spotify-connect, is left alone: apt remove raspotify.
EOF
}

script_option() {
    CONSUMED=0
    if [[ $1 == --purge ]]; then
        PURGE=1
        CONSUMED=1
    fi
}

parse_options "$@"

say "units"
remove_units moodmelody.service moodmelody-hotspot.timer moodmelody-hotspot.service
# What the stopped service left retained on its MQTT broker (Home Assistant's discovery, its
# states, its place among the Mood Melodies sharing a Spotify account) would keep the device
# listed in Home Assistant: clear it. Not in an image being built: that device never ran.
if systemd_running && [[ -x $(target /usr/local/bin/moodmelody) ]]; then
    say "Home Assistant"
    run /usr/local/bin/moodmelody forget ||
        say "could not clear the MQTT broker: delete the device in Home Assistant"
fi
if systemd_running; then
    run systemctl daemon-reload
fi
# The setup hotspot's saved profile: through NetworkManager while it runs, else (stopped, or
# an image build) its keyfile directly.
if ! staging && command -v nmcli >/dev/null && nmcli -t -f RUNNING general 2>/dev/null |
    grep -qx running; then
    if nmcli -t -f NAME connection show | grep -qx moodmelody-setup; then
        run nmcli connection delete moodmelody-setup
    fi
else
    remove_path /etc/NetworkManager/system-connections/moodmelody-setup.nmconnection
fi
remove_path /etc/NetworkManager/dnsmasq-shared.d/moodmelody-captive.conf

say "program"
remove_path /usr/local/bin/moodmelody
remove_path "$PREFIX"

if ((PURGE)); then
    say "settings, tokens and the service user"
    remove_path /etc/moodmelody
    remove_path /var/lib/moodmelody
    if user_exists; then
        run userdel "$SERVICE_USER"
    fi
else
    say "kept /etc/moodmelody and /var/lib/moodmelody (remove them with --purge)"
fi

#!/usr/bin/env bash
# One tick of the setup hotspot: gather the facts with nmcli and iw, ask device.hotspot, act.
# Run by moodmelody-hotspot.timer as root; the decision logic lives in device/hotspot.py.
set -euo pipefail

PROFILE=${HOTSPOT_PROFILE:-moodmelody-setup}
IFACE=${HOTSPOT_IFACE:-wlan0}
SSID=${HOTSPOT_SSID:-MoodMelody-Setup}
PYTHON=${MOODMELODY_PYTHON:-/opt/moodmelody/venv/bin/python}
STATE_FILE=${RUNTIME_DIRECTORY:-/run/moodmelody-hotspot}/state

now=$(cut -d. -f1 /proc/uptime)

# The open "MoodMelody-Setup" network: NetworkManager shares 10.42.0.1/24 with DHCP and
# DNS; /etc/NetworkManager/dnsmasq-shared.d/moodmelody-captive.conf answers every name
# with 10.42.0.1, so any address typed on the phone reaches this device.
ensure_profile() {
    if ! nmcli -t -f NAME connection show | grep -qxF "$PROFILE"; then
        nmcli connection add type wifi ifname "$IFACE" con-name "$PROFILE" autoconnect no \
            ssid "$SSID" 802-11-wireless.mode ap 802-11-wireless.band bg \
            ipv4.method shared ipv6.method disabled >/dev/null
    fi
}

hotspot_active=0
uplink=0
while IFS=: read -r type name; do
    if [[ $name == "$PROFILE" ]]; then
        hotspot_active=1
    elif [[ $type == 802-3-ethernet || $type == 802-11-wireless ]]; then
        uplink=1
    fi
done < <(nmcli -t -f TYPE,NAME connection show --active)

saved_wifi=0
while IFS=: read -r type name; do
    if [[ $type == 802-11-wireless && $name != "$PROFILE" ]]; then
        saved_wifi=$((saved_wifi + 1))
    fi
done < <(nmcli -t -f TYPE,NAME connection show)

clients=0
if ((hotspot_active)); then
    clients=$(iw dev "$IFACE" station dump 2>/dev/null | grep -c '^Station' || true)
fi

# State across ticks (tmpfs, gone at boot): since when nothing happened, since when the AP is up.
quiet_since=0
hotspot_since=0
if [[ -r $STATE_FILE ]]; then
    read -r quiet_since hotspot_since <"$STATE_FILE" || true
fi
((uplink)) && quiet_since=$now
if ((!hotspot_active)); then
    hotspot_since=0
elif ((hotspot_since == 0)); then
    hotspot_since=$now
fi
hotspot_s=0
((hotspot_active)) && hotspot_s=$((now - hotspot_since))

read -r action reason < <("$PYTHON" -m device.hotspot \
    --uplink "$uplink" --hotspot-active "$hotspot_active" --saved-wifi "$saved_wifi" \
    --clients "$clients" --offline-s "$((now - quiet_since))" --hotspot-s "$hotspot_s")

case $action in
    start)
        echo "starting the setup hotspot $SSID: $reason"
        ensure_profile
        nmcli connection up "$PROFILE" >/dev/null
        hotspot_since=$now
        ;;
    stop)
        echo "stopping the setup hotspot: $reason"
        nmcli connection down "$PROFILE" >/dev/null
        quiet_since=$now
        hotspot_since=0
        ;;
    keep) ;;
    *)
        echo "device.hotspot answered '$action $reason'" >&2
        exit 1
        ;;
esac
echo "$quiet_since $hotspot_since" >"$STATE_FILE"

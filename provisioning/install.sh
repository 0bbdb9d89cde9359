#!/usr/bin/env bash
# Install or upgrade Mood Melody on Debian 12 (bookworm) or 13 (trixie), 64-bit (arm64 or
# amd64): Raspberry Pi OS, plain Debian on a mini PC or laptop with a USB webcam, and
# derivatives with the same packages. Also into an SD-card image being built (a chroot).
# Safe to re-run: /etc/moodmelody (settings) and /var/lib/moodmelody (tokens) are kept.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive  # apt-get never stops to ask

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(dirname "$HERE")
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

SET_HOSTNAME=0
MDNS_NAME=moodmelody
SPOTIFY_CONNECT_NAME=
HOTSPOT=1
PICAMERA2=0
APP_PATHS=(device web_config models pyproject.toml README.md config.example.toml)
CONFIG_DIR=/etc/moodmelody
STATE_DIR=/var/lib/moodmelody
RASPOTIFY_KEY=/usr/share/keyrings/raspotify_key.asc

usage() {
    cat <<EOF
Usage: sudo $0 [options]

Installs Mood Melody into $PREFIX, its settings into $CONFIG_DIR (never overwritten),
and starts moodmelody.service. Re-run it to upgrade.

  --hostname                   rename this device to "$MDNS_NAME" so the page is at
                               http://$MDNS_NAME.local:8080 (mDNS through avahi)
  --with-spotify-connect NAME  also make this Pi a Spotify Connect speaker called NAME
                               (raspotify) and play there by default
  --no-hotspot                 never offer the "MoodMelody-Setup" Wi-Fi when offline
  --prefix DIR                 install the program here (default $PREFIX)
  --image                      building an image: enable the units, start nothing (the
                               default where systemd is not running, as in a chroot)
  --root DIR                   stage into DIR instead of this system: files are written
                               there, system commands are only listed
  --dry-run                    list every action, do nothing
  -h, --help                   this text
EOF
}

script_option() {
    CONSUMED=1
    case $1 in
        --hostname) SET_HOSTNAME=1 ;;
        --with-spotify-connect)
            [[ $# -ge 2 ]] || die "--with-spotify-connect needs a speaker name"
            SPOTIFY_CONNECT_NAME=$2
            CONSUMED=2
            ;;
        --no-hotspot) HOTSPOT=0 ;;
        *) CONSUMED=0 ;;
    esac
}

parse_options "$@"
if [[ -n $SPOTIFY_CONNECT_NAME && ! $SPOTIFY_CONNECT_NAME =~ ^[A-Za-z0-9][A-Za-z0-9\ ._-]{0,63}$ ]]; then
    die "speaker name '$SPOTIFY_CONNECT_NAME': use letters, digits, space, . _ - (64 at most)"
fi
for path in "${APP_PATHS[@]}"; do
    [[ -e $SOURCE/$path ]] || die "$SOURCE/$path is missing: run this from a complete checkout"
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
VENV=$PREFIX/venv
APP=$PREFIX/app

# --- Which system: decides where numpy and OpenCV come from --------------------------------

# RELEASE (the Debian codename: a derivative's own codename is looked through to the Debian
# one it is built on), OS_NAME for messages, APT_NUMERICS, CONSTRAINTS (the pinned versions).
detect_release() {
    local os_release
    os_release=$(target /etc/os-release)
    [[ -r $os_release ]] || os_release=/etc/os-release
    # shellcheck source=/dev/null
    RELEASE=$(. "$os_release" && echo "${VERSION_CODENAME:-unknown}")
    if [[ $RELEASE != bookworm && $RELEASE != trixie ]]; then
        # shellcheck source=/dev/null
        RELEASE=$(. "$os_release" && echo "${DEBIAN_CODENAME:-$RELEASE}")
    fi
    # shellcheck source=/dev/null
    OS_NAME=$(. "$os_release" && echo "${PRETTY_NAME:-${NAME:-Linux} $RELEASE}")
    if [[ -e $(target /etc/rpi-issue) ]]; then
        OS_NAME="Raspberry Pi OS $RELEASE"  # its os-release says "Debian GNU/Linux"
    fi
    case $RELEASE in
        # Bookworm's picamera2 (Raspberry Pi's archive) is built on Debian's numpy 1.24, and
        # pip's opencv-python-headless >= 4.12 wants numpy >= 2, which would shadow it inside
        # the venv. So both from apt, and pip is held to apt's numpy (pin_apt_numpy).
        bookworm) APT_NUMERICS=(python3-numpy python3-opencv) ;;
        # Trixie's picamera2 works with numpy 2: pip's numpy and OpenCV wheels.
        trixie) APT_NUMERICS=() ;;
        *) die "$OS_NAME ($os_release: '$RELEASE') is not supported: supported are Debian 12 \
bookworm and 13 trixie (Raspberry Pi OS, Debian, and derivatives built on them)" ;;
    esac
    CONSTRAINTS=$HERE/constraints-$RELEASE.txt
    [[ -r $CONSTRAINTS ]] || die "$CONSTRAINTS is missing: run this from a complete checkout"
    say "$OS_NAME"
    if ! staging; then
        local arch
        arch=$(dpkg --print-architecture)
        case $arch in
            arm64 | amd64) ;;
            *) die "a 64-bit system (arm64 or amd64) is needed: LiteRT has no $arch build. \
On a Raspberry Pi, install the 64-bit Raspberry Pi OS" ;;
        esac
    fi
}

# The project's dependencies less numpy and OpenCV (apt's on Bookworm), from pyproject.toml.
pip_dependencies_without_numerics() {
    python3 - "$SOURCE/pyproject.toml" <<'PY'
import re
import sys
import tomllib

with open(sys.argv[1], "rb") as file:
    dependencies = tomllib.load(file)["project"]["dependencies"]
for requirement in dependencies:
    name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()
    if name not in {"numpy", "opencv-python-headless"}:
        print(requirement)
PY
}

# picamera2 is packaged in Raspberry Pi's archive only (Raspberry Pi OS has it configured).
# A staged root is judged by its apt sources, this system by what apt can install.
picamera2_available() {
    if staging; then
        grep -rqs 'archive\.raspberrypi\.' "$ROOT/etc/apt/sources.list" "$ROOT/etc/apt/sources.list.d"
    else
        apt-cache show python3-picamera2 >/dev/null 2>&1
    fi
}

install_packages() {
    say "Debian packages"
    run apt-get update
    if picamera2_available; then
        PICAMERA2=1
        # Without recommends: picamera2 would pull in the whole desktop preview stack.
        run apt-get install -y --no-install-recommends python3-picamera2
    else
        PICAMERA2=0
        say "no python3-picamera2 here (it is in Raspberry Pi's archive): USB webcams only"
    fi
    # procps: /bin/kill, the unit's ExecReload= (minimal Debian installs lack it).
    run apt-get install -y python3-venv avahi-daemon iw procps "${APT_NUMERICS[@]}"
}

create_user() {
    if user_exists; then
        say "service user $SERVICE_USER exists"
        return
    fi
    say "service user $SERVICE_USER"
    run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin "$SERVICE_USER"
}

# A fresh copy of the project in $APP (old files removed), root-owned, read-only to the service.
install_app() {
    say "program into $APP"
    local new path
    new=$(target "$APP.new")
    if ((DRY_RUN)); then
        echo "would copy ${APP_PATHS[*]} from $SOURCE to $APP"
    else
        rm -rf "$new"
        mkdir -p "$new"
        for path in "${APP_PATHS[@]}"; do
            cp -R "$SOURCE/$path" "$new/"
        done
        find "$new" -name __pycache__ -prune -exec rm -rf {} +
        rm -rf "$(target "$APP")"
        mv "$new" "$(target "$APP")"
    fi
    set_owner "$APP" root:root u=rwX,go=rX --recursive
}

# The versions pip may install: the release's tested set (provisioning/constraints-*.txt,
# refreshed on purpose with `make device-constraints`), and on Bookworm apt's numpy exactly,
# so that nothing a dependency asks for can put another numpy over it. The venv's pip.conf
# names the file too: a later `pip install` by hand is held to it as well.
install_constraints() {
    say "pinned versions ($(basename "$CONSTRAINTS")) in $PREFIX/constraints.txt"
    cp "$CONSTRAINTS" "$WORK/constraints.txt"
    if ((${#APT_NUMERICS[@]})); then
        local numpy=
        if ! staging && ! ((DRY_RUN)); then
            numpy=$(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)') ||
                die "apt's python3-numpy does not import"
        fi
        if [[ -n $numpy ]]; then
            printf '# apt'"'"'s python3-numpy, which picamera2 and python3-opencv are built on\nnumpy==%s\n' \
                "$numpy" >>"$WORK/constraints.txt"
        else
            echo "(numpy: pinned to apt's python3-numpy version when installed for real)"
        fi
    fi
    install_file "$WORK/constraints.txt" "$PREFIX/constraints.txt" root:root 0644
    printf '[install]\nconstraint = %s\n' "$PREFIX/constraints.txt" >"$WORK/pip.conf"
    install_file "$WORK/pip.conf" "$VENV/pip.conf" root:root 0644
}

# A venv that sees apt's picamera2/libcamera; the project installed editable, so that the
# relative model paths in the config resolve against $APP (device/config.py PROJECT_ROOT).
install_venv() {
    say "Python environment in $VENV"
    if [[ ! -x $(target "$VENV/bin/python") ]] || ! "$(target "$VENV/bin/python")" -c '' 2>/dev/null; then
        run python3 -m venv --clear --system-site-packages "$VENV"
    fi
    install_constraints
    local pip=("$VENV/bin/pip" install --constraint "$PREFIX/constraints.txt")
    if ((${#APT_NUMERICS[@]})); then
        local dependencies
        mapfile -t dependencies < <(pip_dependencies_without_numerics)
        run "${pip[@]}" --no-deps --editable "$APP"
        run "${pip[@]}" "${dependencies[@]}"
        # The trap above, checked: numpy must still be apt's.
        run "$VENV/bin/python" -c \
            'import cv2, numpy; assert numpy.__file__.startswith("/usr/lib/python3/"), numpy.__file__'
    else
        run "${pip[@]}" --editable "$APP"
    fi
    # /opt is read-only to the service: compile now, or every start compiles again.
    run "$VENV/bin/python" -m compileall -q "$APP/device" "$APP/web_config"
}

# Settings: created once from config.example.toml, never overwritten. The directory is
# group-writable for the service (the page saves config.toml by temp file + rename).
install_config() {
    say "settings in $CONFIG_DIR"
    make_dir "$CONFIG_DIR" "root:$SERVICE_USER" 0770
    install_file "$SOURCE/config.example.toml" "$CONFIG_DIR/config.example.toml" root:root 0644
    if [[ -e $(target "$CONFIG_DIR/config.toml") ]]; then
        say "keeping the existing $CONFIG_DIR/config.toml"
    else
        install_file "$SOURCE/config.example.toml" "$CONFIG_DIR/config.toml" \
            "root:$SERVICE_USER" 0640
    fi
    make_dir "$STATE_DIR" "$SERVICE_USER:$SERVICE_USER" 0700
}

# KEY="value" in an environment file: an existing (or commented) KEY line is replaced.
set_env_line() {
    local path=$1 key=$2 value=$3
    if ((DRY_RUN)); then
        echo "would set $key=\"$value\" in $path"
        return
    fi
    local file
    file=$(target "$path")
    mkdir -p "$(dirname "$file")"
    touch "$file"
    sed -i "/^#\?\s*$key=/d" "$file"
    echo "$key=\"$value\"" >>"$file"
}

install_spotify_connect() {
    say "Spotify Connect speaker \"$SPOTIFY_CONNECT_NAME\" (raspotify)"
    if [[ ! -e $(target "$RASPOTIFY_KEY") ]]; then
        run curl -fsSL -o "$RASPOTIFY_KEY" https://dtcooper.github.io/raspotify/key.asc
    fi
    echo "deb [signed-by=$RASPOTIFY_KEY] https://dtcooper.github.io/raspotify raspotify main" \
        >"$WORK/raspotify.list"
    install_file "$WORK/raspotify.list" /etc/apt/sources.list.d/raspotify.list root:root 0644
    run apt-get update
    run apt-get install -y raspotify
    set_env_line /etc/raspotify/conf LIBRESPOT_NAME "$SPOTIFY_CONNECT_NAME"
    if systemd_running; then
        run systemctl restart raspotify.service
    else
        unit_links enable raspotify.service
    fi
    # Our default speaker: only an empty [spotify] device_name is filled in, a chosen one stays.
    local config
    config=$(target "$CONFIG_DIR/config.toml")
    if ((DRY_RUN)); then
        echo "would set [spotify] device_name = \"$SPOTIFY_CONNECT_NAME\" if empty"
    elif grep -q '^device_name = ""$' "$config"; then
        sed -i "s/^device_name = \"\"\$/device_name = \"$SPOTIFY_CONNECT_NAME\"/" "$config"
    fi
}

set_hostname() {
    say "hostname $MDNS_NAME (mDNS: $MDNS_NAME.local)"
    echo "$MDNS_NAME" >"$WORK/hostname"
    install_file "$WORK/hostname" /etc/hostname root:root 0644
    if ((DRY_RUN)); then
        echo "would point 127.0.1.1 at $MDNS_NAME in /etc/hosts"
    else
        local hosts
        hosts=$(target /etc/hosts)
        touch "$hosts"
        sed -i '/^127\.0\.1\.1\s/d' "$hosts"
        printf '127.0.1.1\t%s\n' "$MDNS_NAME" >>"$hosts"
    fi
    # In an image build, `hostname` would rename the machine building it: the file is enough.
    if systemd_running; then
        run hostname "$MDNS_NAME"
        run systemctl restart avahi-daemon.service
    fi
}

install_units() {
    say "systemd units"
    local unit units=(moodmelody.service)
    if ((HOTSPOT)); then
        units+=(moodmelody-hotspot.service moodmelody-hotspot.timer)
        install_file "$HERE/hotspot.sh" "$PREFIX/bin/hotspot.sh" root:root 0755
        install_file "$HERE/captive-dnsmasq.conf" \
            /etc/NetworkManager/dnsmasq-shared.d/moodmelody-captive.conf root:root 0644
    fi
    for unit in "${units[@]}"; do
        sed "s|/opt/moodmelody|$PREFIX|g" "$SOURCE/systemd/$unit" >"$WORK/$unit"
        install_file "$WORK/$unit" "/etc/systemd/system/$unit" root:root 0644
    done
    unit_links enable moodmelody.service
    if systemd_running; then
        run systemctl daemon-reload
        # A restart, not a start: an upgrade must run the new code.
        run systemctl restart moodmelody.service
    fi
    if ((HOTSPOT)); then
        unit_links enable moodmelody-hotspot.timer
        if systemd_running; then
            run systemctl start moodmelody-hotspot.timer
        fi
    else
        remove_units moodmelody-hotspot.timer moodmelody-hotspot.service
        remove_path "$PREFIX/bin/hotspot.sh"
        remove_path /etc/NetworkManager/dnsmasq-shared.d/moodmelody-captive.conf
    fi
}

page_address() {
    local host=$MDNS_NAME port
    if ((!SET_HOSTNAME)); then
        host=$(cat "$(target /etc/hostname)" 2>/dev/null || hostname)
    fi
    port=$(sed -n 's/^listen = "[^"]*:\([0-9]\+\)"$/\1/p' "$(target "$CONFIG_DIR/config.toml")" \
        2>/dev/null || true)
    echo "http://$host.local:${port:-8080}"
}

# The daemon writes its first-run setup code on its first start; give it a moment (not when
# it was not started: staged, a dry run, an image build).
setup_code() {
    local file attempt
    file=$(target "$STATE_DIR/setup-code")
    for attempt in {1..15}; do
        if [[ -r $file ]]; then
            cat "$file"
            return
        fi
        if ((DRY_RUN)) || staging || ! systemd_running; then
            return
        fi
        ((attempt < 15)) && sleep 1
    done
    return 0
}

summary() {
    local code
    code=$(setup_code)
    echo
    if systemd_running; then
        echo "Mood Melody is installed. Open $(page_address) on a phone or computer in this network."
    else
        echo "Mood Melody is installed into this image, its units enabled; nothing was started"
        echo "(no running systemd here, or --image). At the first boot moodmelody.service starts"
        echo "and writes its setup code to $STATE_DIR/setup-code and the journal; then open"
        echo "$(page_address) on a phone or computer in that network."
    fi
    if [[ -n $code ]]; then
        echo "Setup code: $code"
    elif systemd_running; then
        echo "Setup code: see: journalctl -u moodmelody | grep \"setup code\""
    fi
    if ((HOTSPOT)); then
        echo "Without a network it offers the Wi-Fi \"MoodMelody-Setup\"; the page is then at"
        echo "http://10.42.0.1:8080"
    fi
    if ((PICAMERA2)); then
        echo "Camera: the Raspberry Pi camera (picamera2) or a USB webcam."
    else
        echo "Camera: USB webcams (/dev/video*) only; picamera2 is not installed, as this"
        echo "system's package archives do not have it (Raspberry Pi's do)."
    fi
}

# `moodmelody` on the PATH, running as the service (see command.sh).
install_command() {
    say "command line /usr/local/bin/moodmelody"
    sed "s|/opt/moodmelody|$PREFIX|g" "$HERE/command.sh" >"$WORK/moodmelody"
    install_file "$WORK/moodmelody" /usr/local/bin/moodmelody root:root 0755
}

detect_release
install_packages
create_user
install_app
install_venv
install_config
install_command
if [[ -n $SPOTIFY_CONNECT_NAME ]]; then
    install_spotify_connect
fi
if ((SET_HOSTNAME)); then
    set_hostname
fi
install_units
summary

# shellcheck shell=bash
# Shared by install.sh and uninstall.sh: options common to both, and every action routed
# through one place so that --dry-run lists it and --root stages it instead of doing it.
#
# Modes: real (ROOT=/), staging (--root DIR: files go under DIR, commands that would change
# the running system are printed as "would run:" and recorded in DIR/moodmelody-plan/),
# dry run (--dry-run: nothing is written at all, every action is printed). The plan has
# two files: "commands" (one command line each) and "ownership" (OWNER MODE PATH).

ROOT=/
PREFIX=/opt/moodmelody
DRY_RUN=0
SERVICE_USER=moodmelody
PLAN_DIR=
BOOTED=  # systemd_running's answer, once asked; --image sets it to 0

die() {
    echo "error: $*" >&2
    exit 1
}

say() {
    echo "==> $*"
}

# Handle --root/--prefix/--dry-run at "$1" ("$2" its value): sets CONSUMED to the
# number of arguments used, 0 when "$1" is not one of them.
# shellcheck disable=SC2034  # CONSUMED is read by the caller
common_option() {
    CONSUMED=0
    case $1 in
        --root | --prefix)
            [[ $# -ge 2 ]] || die "$1 needs a directory"
            if [[ $1 == --root ]]; then ROOT=$2; else PREFIX=$2; fi
            CONSUMED=2
            ;;
        --dry-run) DRY_RUN=1; CONSUMED=1 ;;
        --image) BOOTED=0; CONSUMED=1 ;;
    esac
}

# The whole command line: the common options above, the script's own in its function
# script_option (setting CONSUMED the same way), then -h/--help; then setup_mode.
parse_options() {
    while (($#)); do
        common_option "$@"
        ((CONSUMED)) || script_option "$@"
        if ((!CONSUMED)); then
            case $1 in
                -h | --help) usage; exit 0 ;;
                *) usage >&2; die "unknown option: $1" ;;
            esac
        fi
        shift "$CONSUMED"
    done
    setup_mode
}

setup_mode() {
    [[ $PREFIX == /* ]] || die "--prefix must be an absolute path (got $PREFIX)"
    if [[ $ROOT != / ]]; then
        ROOT=$(realpath -m "$ROOT")
        PLAN_DIR=$ROOT/moodmelody-plan
        if ((!DRY_RUN)); then
            rm -rf "$PLAN_DIR"  # the plan of this run only
            mkdir -p "$PLAN_DIR"
        fi
    elif ((!DRY_RUN)) && ((EUID != 0)); then
        die "run as root (sudo), or stage with --root DIR, or look with --dry-run"
    fi
    systemd_running || true  # asked once, here: the answer is kept in BOOTED
}

staging() {
    [[ $ROOT != / ]]
}

# Does systemd run this system now, so that units can be started and stopped? Not in a
# chroot (an SD-card image being built by pi-gen or rpi-image-gen, a debootstrap tree), nor
# with --image: units are then only enabled, and start at the first boot. A staged root
# lists what a running system would do.
systemd_running() {
    if [[ -z $BOOTED ]]; then
        BOOTED=0
        if staging || { [[ -d /run/systemd/system ]] &&
            ! systemd-detect-virt --quiet --chroot 2>/dev/null; }; then
            BOOTED=1
        fi
    fi
    ((BOOTED))
}

# A path on the target system, as seen from here.
target() {
    if staging; then
        echo "$ROOT$1"
    else
        echo "$1"
    fi
}

plan() {
    if ((!DRY_RUN)) && staging; then
        echo "$2" >>"$PLAN_DIR/$1"
    fi
}

# A command line as the shell would read it back.
quoted() {
    local line
    printf -v line '%q ' "$@"
    echo "${line% }"
}

# A command that changes the running system: done for real, else printed (and recorded).
run() {
    if ((DRY_RUN)) || staging; then
        echo "would run: $(quoted "$@")"
        plan commands "$(quoted "$@")"
    else
        echo "+ $(quoted "$@")"
        "$@"
    fi
}

# Owner and mode of a target path (a fourth argument --recursive: of all below it too);
# in staging the owner goes to the ownership plan.
set_owner() {
    local path=$1 owner=$2 mode=$3 recursive=()
    [[ ${4:-} == --recursive ]] && recursive=(-R)
    if ((DRY_RUN)); then
        echo "would set $owner $mode on $path${recursive[*]:+ and below}"
        return
    fi
    chmod "${recursive[@]}" "$mode" "$(target "$path")"
    if staging; then
        plan ownership "$owner $mode $path${recursive[*]:+ (recursive)}"
    else
        chown "${recursive[@]}" "$owner" "$path"
    fi
}

make_dir() {
    local path=$1 owner=$2 mode=$3
    if ((DRY_RUN)); then
        echo "would create directory $path"
    else
        mkdir -p "$(target "$path")"
    fi
    set_owner "$path" "$owner" "$mode"
}

install_file() {
    local source=$1 path=$2 owner=$3 mode=$4
    if ((DRY_RUN)); then
        echo "would install $source as $path"
    else
        mkdir -p "$(dirname "$(target "$path")")"
        install -m "$mode" "$source" "$(target "$path")"
    fi
    set_owner "$path" "$owner" "$mode"
}

remove_path() {
    local path=$1
    if [[ ! -e $(target "$path") && ! -L $(target "$path") ]]; then
        return
    fi
    if ((DRY_RUN)); then
        echo "would remove $path"
    else
        echo "removing $path"
        rm -rf "$(target "$path")"
    fi
}

user_exists() {
    if staging; then
        grep -q "^$SERVICE_USER:" "$ROOT/etc/passwd" 2>/dev/null
    else
        getent passwd "$SERVICE_USER" >/dev/null
    fi
}

# systemctl enable/disable only make symlinks under /etc, so a staged root gets them too.
unit_links() {
    local command=(systemctl)
    staging && command+=("--root=$ROOT")
    command+=("$@")
    if ((DRY_RUN)); then
        echo "would run: ${command[*]}"
    else
        echo "+ ${command[*]}"
        "${command[@]}"
    fi
}

# Disable and remove installed unit files (those that are there).
remove_units() {
    local unit
    for unit in "$@"; do
        if [[ -e $(target "/etc/systemd/system/$unit") ]]; then
            unit_links disable "$unit"
            if systemd_running; then
                run systemctl stop "$unit"
            fi
            remove_path "/etc/systemd/system/$unit"
        fi
    done
}

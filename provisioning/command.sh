#!/bin/sh
# /usr/local/bin/moodmelody (installed by install.sh): the command line for an administrator
# over SSH, run the way the service runs, as its user with its settings and state folder.
# So `sudo moodmelody login` or `reset-password` writes files the service can read, and
# `moodmelody check` sees what the service sees.
if [ "$(id -u)" -ne 0 ]; then
    exec sudo "$0" "$@"
fi
exec runuser -u moodmelody -- env CONFIGURATION_DIRECTORY=/etc/moodmelody \
    STATE_DIRECTORY=/var/lib/moodmelody /opt/moodmelody/venv/bin/moodmelody "$@"

#!/bin/bash
# Run the README's two commands, exactly as written, on a stock Debian 12.
#
# Builds a minimal Debian 12 (bookworm) root with debootstrap from Debian's
# own mirror (minbase plus python3, git and ca-certificates, as a standard
# server has), gives it the APT sources Debian's installer writes (the main
# suite, bookworm-updates and bookworm-security: the bed's 6.12 kernel comes
# from the last), copies in this host's resolv.conf and CA certificates so
# that it reaches what the host reaches, bind-mounts the root on itself (a
# mount point, as / is on a booted machine) and /dev, /proc and /sys in it,
# clones the committed HEAD of this checkout into /root/nova-vdpa and runs
# each `$ ` line of the README's first console block there, as root, with a
# login's minimal environment. Prints each command's status and time; the
# output of each goes to WORKDIR/<n>.log.
#
#   usage: tools/check-fresh-debian.sh [--keep] [WORKDIR]
#
# Run as root on a Debian-like host (installs debootstrap if missing). The
# root, with the bed's packages, kernel cache and tox environments, takes
# a few GB; it is removed at the end unless --keep is given (the logs stay
# in WORKDIR).
set -eu

keep=
if [ "${1:-}" = --keep ]; then keep=1; shift; fi
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /var/tmp/nova-vdpa-fresh-debian.XXXXXX)}
root=$work/root
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

note() { echo "check-fresh-debian: $*" >&2; }
[ "$(id -u)" -eq 0 ] || { note "run as root (debootstrap, chroot, mounts)"; exit 2; }

mounted=()
status=1
cleanup() {
    local m pid
    # Processes the commands left running in the root (a bed's QEMU after
    # an interrupted run): found by their root directory, ended by pid.
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$root" ] && kill -9 "$pid" 2>/dev/null
    done
    for (( i=${#mounted[@]}-1; i>=0; i-- )); do
        m=${mounted[$i]}
        umount -R "$m" 2>/dev/null || umount -R -l "$m"
    done
    if [ -n "$keep" ]; then
        note "kept $work"
    else
        # The logs stay (kilobytes); the root (GBs) goes.
        rm -rf --one-file-system "$root"
        note "removed $root; logs in $work"
    fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# The README's commands: the `$ ` lines of its first console block, comment
# dropped, verbatim otherwise.
mapfile -t commands < <(awk '
    /^\.\. code-block:: console/ { inblock = 1; next }
    inblock && /^   \$ / { sub(/^   \$ /, ""); sub(/[ \t]+#.*$/, ""); print; seen = 1; next }
    inblock && seen && /^[^ ]/ { exit }' "$repo/README.rst")
[ ${#commands[@]} -gt 0 ] || { note "no console commands found in README.rst"; exit 2; }

if ! command -v debootstrap >/dev/null; then
    note "installing debootstrap"
    apt-get install -y -q debootstrap >/dev/null
fi

mkdir -p "$work"
t0=$(date +%s)
debootstrap --variant=minbase --include=python3,git,ca-certificates \
    bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { note "debootstrap failed, see $work/debootstrap.log"; exit 1; }
note "debootstrap (minbase + python3, git, ca-certificates): $(( $(date +%s) - t0 )) s, $(du -sm "$root" | cut -f1) MB"

# The sources Debian's installer writes on a new system.
rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cp /etc/resolv.conf "$root/etc/resolv.conf"
if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
    cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
chroot "$root" update-ca-certificates >/dev/null 2>&1
# A chroot has no init: packages must not start their daemons (libvirtd,
# ovs-vswitchd) in it, as they would on a booted server. The bed starts
# its own inside its VM.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"

# The root a mount point of its own, as / is on a booted machine: the bed
# runs `unshare --mount`, which makes / private and fails (EINVAL) on a
# chroot's plain directory.
mount --bind "$root" "$root"
mounted+=("$root")
for fs in dev proc sys; do
    mount --rbind "/$fs" "$root/$fs"
    mount --make-rslave "$root/$fs"
    mounted+=("$root/$fs")
done

git clone --quiet "$repo" "$root/root/nova-vdpa"
note "cloned $(git -C "$repo" rev-parse --short HEAD) into /root/nova-vdpa"

status=0
n=0
for command in "${commands[@]}"; do
    n=$((n + 1))
    note "running \`$command\` (output in $work/$n.log)"
    t0=$(date +%s)
    rc=0
    chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/sh -c "cd /root/nova-vdpa && $command" >"$work/$n.log" 2>&1 \
        || rc=$?
    note "\`$command\` exited $rc after $(( $(date +%s) - t0 )) s; its last lines:"
    tail -n 5 "$work/$n.log" >&2
    [ "$rc" -eq 0 ] || status=1
done
note "root size at the end: $(du -sm --one-file-system "$root" | cut -f1) MB"
exit "$status"

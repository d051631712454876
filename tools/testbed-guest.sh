#!/bin/bash
# The guest side of the nova-vdpa test bed (tools/testbed.py boots the VM
# and runs this as root inside it). It loads the kernel modules, starts the
# requested services each with a private runtime folder, runs the command,
# stops the services cleanly and writes the command's exit status to
# $results/status, which is how the host tells "ran and failed" from "did
# not boot". Service logs stay in $results/logs when the command failed.
#
# Shell, not Python: under TCG every Python start costs seconds.
set -u

results= modules= services=
while [ $# -gt 0 ]; do
    case "$1" in
        --results) results=$2; shift 2 ;;
        --modules) modules=$2; shift 2 ;;
        --services) services=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "testbed-guest: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -n "$results" ] || { echo "testbed-guest: --results is required" >&2; exit 2; }
logs=$results/logs
mkdir -p "$logs"
export NOVA_VDPA_TESTBED=1 NOVA_VDPA_TESTBED_RESULTS=$results
export NOVA_VDPA_TESTBED_LOGS=$logs NOVA_VDPA_TESTBED_SERVICES=$services
# The modules with their parameters, for tests that load them again.
export NOVA_VDPA_TESTBED_MODULES=$modules

# oslo_privsep.daemon imports eventlet when it is installed (nova needs
# it) and eventlet warns at import, in every process that imports
# oslo.privsep (nova's libvirt driver, the tests, the privsep daemon they
# start). Ignore warnings raised from that one module, nothing else.
# futurist._utils does the same import (nova.context imports futurist): a
# test module that imports nova's objects before oslo.privsep warns from
# there instead.
export PYTHONWARNINGS=${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore::Warning:oslo_privsep.daemon,ignore::Warning:futurist._utils

note() { echo "testbed-guest: $*" >&2; }
fail() { note "$*"; echo 125 > "$results/status"; exit 125; }

# Warnings and worse reach the console, which the host keeps in
# $results/console.log: an oops or a panic that kills the VM is in there.
echo 5 > /proc/sys/kernel/printk

# "name:param=value:param=value" loads a module with parameters.
for m in ${modules//,/ }; do
    IFS=: read -r -a words <<< "$m"
    modprobe "${words[@]}" || fail "cannot load kernel module $m"
done

# ------------------------------------------------------------- libvirtd
libvirt_start() {
    # /etc is a throwaway overlay in the guest: adapt the host's config.
    # QEMU runs as root without namespaces (the guest has no users set up),
    # and writes its stdio to a file (no virtlogd here).
    cat >> /etc/libvirt/qemu.conf <<'CONF'
user = "root"
group = "root"
stdio_handler = "file"
namespaces = [ ]
CONF
    rm -f /etc/libvirt/qemu/networks/autostart/*.xml
    export LIBVIRT_DEFAULT_URI=qemu:///system
    LIBVIRT_LOG_OUTPUTS="3:file:$logs/libvirtd.log" \
        libvirtd --daemon --pid-file=/run/nova-vdpa-libvirtd.pid \
        || fail "libvirtd did not start"
    # The first answer waits for QEMU's capability probe (~15 s under TCG).
    local i
    for i in $(seq 1 240); do
        virsh -q version >/dev/null 2>&1 && { note "libvirtd answers after ${i}x0.5 s"; return 0; }
        sleep 0.5
    done
    fail "libvirtd did not answer within 120 s (see $logs/libvirtd.log)"
}

libvirt_stop() {
    local dom
    for dom in $(virsh -q list --all --name 2>/dev/null); do
        virsh -q destroy "$dom" >/dev/null 2>&1
        virsh -q undefine "$dom" >/dev/null 2>&1
    done
    cp -r /var/log/libvirt/qemu "$logs/qemu" 2>/dev/null
    [ -f /run/nova-vdpa-libvirtd.pid ] && kill "$(cat /run/nova-vdpa-libvirtd.pid)" 2>/dev/null
}

# --------------------------------------------------------- Open vSwitch
ovs_start() {
    local d=/run/nova-vdpa-ovs
    mkdir -p "$d"
    export OVS_RUNDIR=$d OVS_DBDIR=$d OVS_SYSCONFDIR=$d OVS_LOGDIR=$logs
    export NOVA_VDPA_TESTBED_OVSDB=unix:$d/db.sock
    ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema \
        || fail "ovsdb-tool create failed"
    # Each daemon announces its log file on stderr before -vconsole:off
    # applies: that line goes to the logs folder with the rest.
    ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" \
        --pidfile --detach --log-file -vconsole:off 2>>"$logs/ovs-start.log" \
        || fail "ovsdb-server did not start (see $logs/ovs-start.log)"
    ovs-vsctl --no-wait init || fail "ovs-vsctl init failed"
    ovs-vswitchd "unix:$d/db.sock" --pidfile --detach --log-file -vconsole:off \
        2>>"$logs/ovs-start.log" \
        || fail "ovs-vswitchd did not start (see $logs/ovs-start.log)"
    note "Open vSwitch running in $d"
}

ovs_stop() {
    local br
    # Bridges go first, or their tap devices outlive ovs-vswitchd.
    for br in $(ovs-vsctl list-br 2>/dev/null); do
        ovs-vsctl --if-exists del-br "$br"
    done
    ovs-appctl -t ovs-vswitchd exit 2>/dev/null
    ovs-appctl -t ovsdb-server exit 2>/dev/null
}

started=
for s in ${services//,/ }; do
    case "$s" in
        libvirt) libvirt_start ;;
        ovs) ovs_start ;;
        *) fail "unknown service $s" ;;
    esac
    started="$s $started"
done

"$@"
rc=$?

for s in $started; do "${s}_stop"; done
if [ "$rc" -eq 0 ]; then
    rm -rf "$logs"
else
    dmesg > "$logs/dmesg.log" 2>&1
    note "command failed with status $rc; logs kept in $logs"
fi
echo "$rc" > "$results/status"
exit "$rc"

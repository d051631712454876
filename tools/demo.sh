#!/bin/bash
# The nova-vdpa demo, run as root inside the test bed (tox -e demo).
# Shows the vdpa state the plugin works with: management devices, a device
# created with a MAC and MTU, bound to vhost_vdpa, its /dev/vhost-vdpa-N,
# and the services (libvirtd, Open vSwitch) the plugin talks to.
set -eu
step() { printf '\n== %s\n' "$*"; }

step "vdpa management devices (kernel vdpa netlink family)"
vdpa mgmtdev show
step "create vdpa0 on vdpasim_net with a MAC and an MTU"
vdpa dev add name vdpa0 mgmtdev vdpasim_net mac fa:16:3e:00:00:01 mtu 1450
vdpa dev show vdpa0
vdpa dev config show vdpa0
dev=/sys/bus/vdpa/devices/vdpa0
echo "autoprobed to: $(basename "$(readlink "$dev/driver")")"
step "bind vdpa0 to vhost_vdpa deterministically (driver_override)"
echo vhost_vdpa > "$dev/driver_override"
echo vdpa0 > "$dev/driver/unbind"
echo vdpa0 > /sys/bus/vdpa/drivers_probe
echo "bound to: $(basename "$(readlink "$dev/driver")")"
chardev=$(basename "$dev"/vhost-vdpa-*)
echo "chardev: /dev/$chardev ($(cat "$dev/$chardev/dev"))"
ls -l "/dev/$chardev"
step "libvirt sees it as a node device"
virsh nodedev-list --cap vdpa
step "Open vSwitch"
ovs-vsctl show
step "release vdpa0"
vdpa dev del vdpa0
vdpa dev show

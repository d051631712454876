#!/usr/bin/env python3
#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""The nova-vdpa demo, run as root inside the test bed (``tox -e demo``).

It walks through what nova-vdpa does for one ``vnic_type=vdpa`` port, on
the bed's real kernel, libvirtd and QEMU:

1. list the management devices through nova-vdpa's netlink client;
2. create a vDPA device with the port's MAC and MTU, bind it to vhost_vdpa
   (the bed loads virtio_vdpa first, so autoprobe picks the wrong driver)
   and find its ``/dev/vhost-vdpa-N``;
3. render the guest interface with the designer and start a paused guest
   whose QEMU takes the chardev;
4. show that deleting the device is refused, at once, while QEMU holds it;
5. stop the guest and release the device.

Each step prints what the kernel or libvirt reports, not what we asked for.
"""

import sys
import time
import uuid

import libvirt
from nova.virt.libvirt import config as vconfig
from oslo_config import cfg as oslo_cfg

from nova_vdpa import conf
from nova_vdpa import exception
from nova_vdpa.kernel import lifecycle
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs
from nova_vdpa.libvirt import designer

PORT_MAC = 'fa:16:3e:5d:00:01'
NETWORK_MTU = 1450
DEVICE = 'vdpa-demo0'
DOMAIN = 'nova-vdpa-demo'


def step(title):
    print(f'\n== {title}', flush=True)


def delete_timeout():
    """``[nova_vdpa] delete_timeout`` as nova-compute reads it (default)."""
    opts = oslo_cfg.ConfigOpts()
    conf.register_opts(opts)
    opts([], default_config_files=[])
    return opts.nova_vdpa.delete_timeout


def guest_xml(interface, vcpus):
    """A tiny paused-only guest built with Nova's own config classes."""
    guest = vconfig.LibvirtConfigGuest()
    guest.virt_type = 'qemu'
    guest.name = DOMAIN
    guest.uuid = str(uuid.uuid4())
    guest.memory = 128 * 1024
    guest.vcpus = vcpus
    guest.os_type = 'hvm'
    guest.os_mach_type = 'q35'
    guest.add_device(interface)
    return guest.to_xml()


def main():
    with netlink.VdpaClient() as client:
        return walk(client, sysfs.VdpaSysfs())


def walk(client, bus):

    step('management devices (vdpa netlink, nova_vdpa.kernel.netlink)')
    for mgmt in client.list_management_devices():
        print(f'{mgmt.handle}: classes={mgmt.supported_classes} '
              f'max_vqs={mgmt.max_supported_vqs} '
              f'features={mgmt.supported_feature_names}')

    step(f'create {DEVICE} for port {PORT_MAC} (MTU {NETWORK_MTU})')
    t0 = time.monotonic()
    chardev = lifecycle.create_device(client, bus, DEVICE, 'vdpasim_net',
                                      mac=PORT_MAC, mtu=NETWORK_MTU)
    print(f'created, bound to {bus.driver(DEVICE)} and found {chardev} in '
          f'{(time.monotonic() - t0) * 1000:.0f} ms')
    dev = client.get_device(DEVICE)
    cfg = client.get_config(DEVICE)
    print(f'kernel: mgmtdev={dev.mgmtdev} max_vqs={dev.max_vqs} '
          f'max_vq_size={dev.max_vq_size} mac={cfg.mac} mtu={cfg.mtu} '
          f'link_up={cfg.link_up}')

    conn = libvirt.open('qemu:///system')
    domain = None
    try:
        step('guest interface rendered by nova_vdpa.libvirt.designer')
        host = designer.Host(libvirt_version=conn.getLibVersion(),
                             qemu_version=conn.getVersion())
        iface = designer.get_vdpa_interface_config(
            designer.Port(mac=PORT_MAC, mtu=NETWORK_MTU),
            designer.Device(chardev=chardev,
                            max_queue_pairs=cfg.max_vq_pairs or 1,
                            max_vq_size=dev.max_vq_size,
                            features=cfg.device_features, mtu=cfg.mtu),
            host, vcpus=2,
            extra_specs={'hw:vif_multiqueue_enabled': 'true'},
            rx_queue_size=512, tx_queue_size=512)
        print(iface.to_xml())

        step('define and start a paused guest (libvirt + QEMU)')
        domain = conn.defineXML(guest_xml(iface, vcpus=2))
        domain.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
        [qemu] = bus.holders(chardev)
        print(f'{chardev} held by pid {qemu.pid}: {qemu.cmdline[:60]}')
        with open(f'/proc/{qemu.pid}/cmdline') as f:
            args = f.read().split('\0')
        print('QEMU: ' + next(a for a in args if 'vhost-vdpa' in a))

        step(f'delete {DEVICE} while QEMU holds it')
        t0 = time.monotonic()
        try:
            lifecycle.delete_device(bus, DEVICE, timeout=delete_timeout())
            print('UNEXPECTED: the device was deleted')
            return 1
        except exception.VdpaDeviceInUse as e:
            print(f'refused in {(time.monotonic() - t0) * 1000:.0f} ms: {e}')
    finally:
        if domain is not None:
            step('stop the guest')
            domain.destroy()
            domain.undefine()
        conn.close()

    step(f'release {DEVICE}')
    lifecycle.delete_device(bus, DEVICE, timeout=delete_timeout())
    print('devices left: %s' % [d.name for d in client.list_devices()])
    return 0


if __name__ == '__main__':
    sys.exit(main())

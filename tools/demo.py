#!/usr/bin/env python3
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The nova-vdpa demo, run as root inside the test bed (``tox -e demo``).

It walks two ``vnic_type=vdpa`` ports through nova-vdpa's allocator the way
nova-compute does, on the bed's real kernel, libvirtd and QEMU, with the
privileged work done by nova-vdpa's own privsep daemon (CAP_NET_ADMIN):

1. the inventory: which VFs can get a vDPA device (the bed has no vDPA
   VFs: the test-only ``simulated_vfs`` option serves two made-up VF
   addresses from vdpa_sim_net);
2. port A gets a device named after the port, with its MAC and MTU,
   bound to vhost_vdpa; asking again returns the same device;
3. an operator made a device for VF 2 by hand, as upstream Nova requires:
   port B adopts it as it is;
4. the designer renders both interfaces and a guest starts on the two
   chardevs: no OS, but iPXE (``tests/functional/ipxe_guest.py``), which
   pings its own address through port A's device (vdpa_sim_net loops each
   frame back: a simulator's loopback, not a wire), then sends to a wrong
   MAC, which the device drops;
5. releasing port A while QEMU holds it is refused at once;
6. the guest's ping replies and port A's device counters (rx/tx packets,
   drops, errors, read with nova-vdpa's netlink client);
7. the guest stops, both ports are released: port A's device is gone, the
   operator's is untouched.

Each step prints what the kernel or libvirt reports, not what we asked for.
"""

import logging
import os
import sys
import tempfile
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

VF_A = '0000:00:05.1'
VF_B = '0000:00:05.2'
PORT_A = '3f1d6c4e-2a5b-4e8f-9c7d-1b2a3c4d5e6f'
PORT_B = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d'
MAC_A = 'fa:16:3e:5d:00:01'
MAC_B = 'fa:16:3e:5d:00:02'
NETWORK_MTU = 1450
OPERATOR_DEVICE = 'vdpa-op0'
DOMAIN = 'nova-vdpa-demo'
SIM = 'vdpasim_net'
GUEST_ADDRESS = '10.30.0.2'
#: seconds until the guest's pings are done (boot + pings, nested TCG)
GUEST_TIMEOUT = 900


def step(title):
    print(f'\n== {title}', flush=True)


def configure(tmp):
    """nova.conf's nova-vdpa group, read by nova-compute and the daemon."""
    from oslo_config import cfg

    from nova_vdpa import conf as vdpa_conf
    import nova_vdpa.privsep

    path = os.path.join(tmp, 'nova.conf')
    group = vdpa_conf.vdpa_group.name
    text = (f'[{group}]\nmanagement_devices = {SIM}\n'
            f'simulated_vfs = {VF_A}={SIM},{VF_B}={SIM}@{OPERATOR_DEVICE}\n')
    with open(path, 'w') as f:
        f.write(text)
    print(text.rstrip())
    # Parsed into the global configuration, as nova-compute does.
    conf = cfg.CONF
    vdpa_conf.register_opts(conf)
    conf(args=[], default_config_files=[path], default_config_dirs=[])
    # The daemon: privsep-helper with the same file, the checkout on its
    # path (the bed shares the host's files read-only).
    ctx = nova_vdpa.privsep.vdpa_pctxt
    helper = os.path.join(os.path.dirname(sys.executable), 'privsep-helper')
    cfg.CONF.set_override(
        'helper_command',
        # (and without eventlet's deprecation notice, which the daemon's
        # oslo.privsep triggers when it imports eventlet)
        f'env PYTHONPATH={REPO} '
        f'PYTHONWARNINGS=ignore::Warning:oslo_privsep.daemon '
        f'{helper} --config-file {path}',
        group=ctx.cfg_section)
    return conf


def describe(client, a):
    cfg = client.get_config(a.name)
    driver = os.path.basename(os.readlink(
        f'/sys/bus/vdpa/devices/{a.name}/driver'))
    return (f'{a.name} on {a.mgmtdev}, {"ours" if a.owned else "adopted"}: '
            f'mac={cfg.mac} mtu={cfg.mtu} driver={driver} '
            f'chardev={a.chardev}')


def main():
    # The bed sets simulated_vfs on purpose: its test-only warning, and
    # eventlet's deprecation notice (oslo.privsep imports eventlet), would
    # be noise here.
    logging.getLogger('nova_vdpa.allocator').setLevel(logging.ERROR)
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    # The daemon's stderr comes back as warnings of this logger: there,
    # only the same eventlet notice (errors come back as exceptions).
    logging.getLogger('oslo_privsep.daemon').setLevel(logging.ERROR)
    sys.path.insert(0, REPO)
    with tempfile.TemporaryDirectory() as tmp:
        return walk(tmp)


def walk(tmp):
    import libvirt
    from nova import objects

    from nova_vdpa import allocator
    from nova_vdpa import exception
    from nova_vdpa.kernel import netlink
    from nova_vdpa.kernel import sysfs
    from nova_vdpa.libvirt import designer
    from tests.functional import ipxe_guest

    step('configuration (test only: two made-up VFs on vdpa_sim_net)')
    conf = configure(tmp)
    client = netlink.VdpaClient()
    alloc = allocator.Allocator.from_conf(conf)

    step('inventory: VFs that can get a network vDPA device now')
    for vf, mgmt in sorted(alloc.vf_management_devices().items()):
        print(f'{vf} -> {mgmt.handle} (max_vqs={mgmt.max_supported_vqs})')

    step(f'port {PORT_A} on VF {VF_A}: allocate, twice')
    req_a = allocator.PortRequest(port_id=PORT_A, vf_address=VF_A,
                                  mac=MAC_A, mtu=NETWORK_MTU)
    a = alloc.allocate(req_a)
    print(describe(client, a))
    again = alloc.allocate(req_a)
    print(f'again: {"the same device" if again == a else "DIFFERENT"}, '
          f'devices in the kernel: {[d.name for d in client.list_devices()]}')
    if again != a:
        return 1

    step(f'an operator made {OPERATOR_DEVICE} for VF {VF_B} by hand')
    client.create_device(OPERATOR_DEVICE, SIM, mac='02:00:00:00:0b:01',
                         mtu=NETWORK_MTU)
    sysfs.VdpaSysfs().bind(OPERATOR_DEVICE, sysfs.VHOST_VDPA)
    b = alloc.allocate(allocator.PortRequest(
        port_id=PORT_B, vf_address=VF_B, mac=MAC_B, mtu=NETWORK_MTU))
    print(f'port {PORT_B}: {describe(client, b)}')

    conn = libvirt.open('qemu:///system')
    domain = None
    try:
        step('guest interfaces from nova_vdpa.libvirt.designer')
        objects.register_all()  # the designer takes Nova's Flavor
        flavor = objects.Flavor(name='m1.demo', vcpus=2, extra_specs={})
        host = designer.Host(libvirt_version=conn.getLibVersion(),
                             qemu_version=conn.getVersion())
        interfaces = []
        for mac, x in ((MAC_A, a), (MAC_B, b)):
            iface = designer.get_vdpa_interface_config(
                designer.Port(mac=mac, mtu=NETWORK_MTU),
                designer.device_of(x),
                host, flavor=flavor, rx_queue_size=256, tx_queue_size=256)
            print(iface.to_xml().strip())
            interfaces.append(iface)

        step('define and start a guest that pings through port A (iPXE)')
        xml, serial = ipxe_guest.guest_xml(DOMAIN, interfaces, tmp,
                                           GUEST_ADDRESS)
        domain = conn.defineXML(xml)
        domain.create()
        fs = sysfs.VdpaSysfs()
        for x in (a, b):
            [qemu] = fs.holders(x.chardev)
            print(f'{x.chardev} ({x.name}) held by QEMU, pid {qemu.pid}')

        step(f'release port {PORT_A} while QEMU holds its device')
        try:
            alloc.release(PORT_A, VF_A)
            print('UNEXPECTED: the device was deleted')
            return 1
        except exception.VdpaDeviceInUse as e:
            print(f'refused: {e}')

        step(f'traffic through port {PORT_A}\'s device')
        print('waiting for the guest\'s pings (iPXE boots in 10-30 s '
              'under TCG)...', flush=True)
        text = ipxe_guest.wait_for(serial, ipxe_guest.END, GUEST_TIMEOUT)
        phase1 = text.partition('nova-vdpa: phase 2')[0]
        got = ipxe_guest.replies(phase1, GUEST_ADDRESS)
        print(f'guest: {len(got)} of {ipxe_guest.PINGS} pings to its own '
              f'MAC answered, then pings from the wrong MAC '
              f'{ipxe_guest.WRONG_MAC}')
        t = client.get_traffic(a.name)
        print(f'{a.name}: rx {t.rx_packets} packets, {t.rx_drops} drops, '
              f'{t.rx_errors} errors, {t.rx_overruns} overruns; '
              f'tx {t.tx_packets} packets, {t.tx_drops} drops, '
              f'{t.tx_errors} errors')
        print('(the drops are the frames sent to the wrong MAC: the '
              'device\'s receive filter refused them)')
        if len(got) != ipxe_guest.PINGS or not t.tx_packets or \
                t.rx_packets + t.rx_drops != t.tx_packets:
            print('UNEXPECTED: frames were lost')
            return 1
    finally:
        if domain is not None:
            step('stop the guest')
            domain.destroy()
            domain.undefine()
            print('destroyed')
        conn.close()

    step('release both ports')
    alloc.release(PORT_A, VF_A)
    alloc.release(PORT_B, VF_B)
    left = [d.name for d in client.list_devices()]
    print(f'devices left: {left}')
    ok = left == [OPERATOR_DEVICE]
    # The demo made the operator's device; an operator would keep it.
    client.delete_device(OPERATOR_DEVICE)
    alloc.close()
    client.close()
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())

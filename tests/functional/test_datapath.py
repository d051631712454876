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

"""Frames through devices the allocator made, in guests that boot iPXE.

Each guest (:mod:`tests.functional.ipxe_guest`) gets its interface from the
designer on a device the allocator created for a port (through the privsep
daemon), pings through it, and the device's counters are read with
nova-vdpa's own netlink client (``VdpaClient.get_traffic``), compared with
iproute2's ``vdpa dev vstats show`` and with the guest's own totals.
vdpa_sim_net loops each frame back: this is the simulator's loopback, not
a wire.

``TestDatapath``: the bed's default, vdpa_sim with ``use_va=0`` (physical
addresses, as hardware): frames flow, rx equals tx, nothing lost, no
errors or overruns; a frame to the port's MAC comes back and one to
another MAC is dropped by the device's receive filter.

``TestVirtualAddressDevice``: vdpa_sim reloaded with ``use_va=1`` (as
VDUSE devices always are): the kernel layer says so, the designer refuses
a guest without shared memory and accepts one with it, and two guests
show why: the one with Nova's file-backed shared memory carries traffic,
the one with QEMU's default private memory carries none.
"""

import subprocess
import time

import fixtures
from nova import objects
from testtools import content

from nova_vdpa import exception
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs as sysfs_mod
from nova_vdpa.libvirt import designer
from tests.functional import allocator_base
from tests.functional import base
from tests.functional import ipxe_guest

objects.register_all()  # the designer takes Nova's Flavor

#: seconds until a guest's script ends: boot (11-25 s seen under nested
#: TCG) plus the pings; generous, the bed's CPUs are shared
GUEST_TIMEOUT = 900
SIM = 'vdpasim_net'
PLAIN = objects.Flavor(name='m1.ipxe', vcpus=1, extra_specs={})


class TestCounters(base.BedTestCase):
    """The counter rules the fake kernel enforces, on the real one."""

    def setUp(self):
        super().setUp()
        self.client = netlink.VdpaClient()
        self.addCleanup(self.client.close)
        self.sysfs = sysfs_mod.VdpaSysfs()

    def device(self, name, driver):
        self.client.create_device(name, SIM, mac='fa:16:3e:7b:01:01')
        self.addCleanup(self.client.delete_device, name)
        self.sysfs.bind(name, driver)

    def test_names_per_queue_once_features_are_negotiated(self):
        # virtio_vdpa + virtio_net drive the device at once (the bed has
        # no udev to load virtio_net for the new virtio device).
        subprocess.run(['modprobe', 'virtio_net'], check=True, timeout=60)
        self.device('ctr-virtio', sysfs_mod.VIRTIO_VDPA)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.get_vendor_stats('ctr-virtio', 0)
                break
            except exception.VdpaFeaturesNotNegotiated:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        names = [[n for n, _ in self.client.get_vendor_stats(
            'ctr-virtio', q).stats] for q in range(3)]
        self.assertEqual([['rx packets', 'rx bytes', 'rx errors',
                           'rx overruns', 'rx drops'],
                          ['tx packets', 'tx bytes', 'tx errors',
                           'tx drops'],
                          ['cvq requests', 'cvq successes', 'cvq errors']],
                         names)
        self.assertRaises(exception.VdpaInvalidRequest,
                          self.client.get_vendor_stats,
                          'ctr-virtio', 3)
        self.assertTrue(self.client.get_traffic('ctr-virtio').reported)

    def test_no_counters_before_a_vmm_starts_the_device(self):
        self.device('ctr-vhost', sysfs_mod.VHOST_VDPA)
        self.assertRaises(exception.VdpaFeaturesNotNegotiated,
                          self.client.get_traffic, 'ctr-vhost')


class DatapathTestCase(allocator_base.AllocatorBedTestCase):

    services = ('libvirt',)

    def setUp(self):
        super().setUp()
        import libvirt
        self.libvirt = libvirt
        self.conn = libvirt.open('qemu:///system')
        self.addCleanup(self.conn.close)
        self.workdir = self.useFixture(
            fixtures.TempDir()).path
        self.host = designer.Host(libvirt_version=self.conn.getLibVersion(),
                                  qemu_version=self.conn.getVersion())

    def port_interface(self, i: int):
        """Allocate port ``i``'s device; its allocation and interface."""
        a = self.alloc.allocate(self.request(i, mtu=1500))
        iface = designer.get_vdpa_interface_config(
            designer.Port(mac=allocator_base.MAC % i, mtu=1500),
            designer.device_of(a), self.host, flavor=PLAIN)
        return a, iface

    def start(self, name: str, interfaces, address: str,
              shared_memory: bool = False) -> str:
        """Start an iPXE guest; the path of its serial console file."""
        xml, serial = ipxe_guest.guest_xml(name, interfaces, self.workdir,
                                           address,
                                           shared_memory=shared_memory)
        dom = self.conn.defineXML(xml)
        self.addCleanup(dom.undefine)
        dom.create()
        self.addCleanup(lambda: dom.isActive() and dom.destroy())
        self.addCleanup(lambda: self.addDetail(
            'console:' + name, content.text_content(
                ipxe_guest.console(serial)[-3000:])))
        return serial

    def vstats(self, name: str, queue: int) -> dict:
        """iproute2's counters of one queue: the reference client."""
        return self.vdpa_json('dev', 'vstats', 'show', name, 'qidx',
                              str(queue))


class TestDatapath(DatapathTestCase):

    def test_frames_flow_and_a_wrong_mac_is_dropped(self):
        # The bed models hardware: physical addresses, any guest memory.
        self.assertFalse(self.alloc.uses_virtual_addresses(SIM))
        a, iface = self.port_interface(0)
        address = '10.20.0.2'
        serial = self.start('nova-vdpa-dp', [iface], address)
        text = ipxe_guest.wait_for(serial, ipxe_guest.END, GUEST_TIMEOUT)

        phase1, _, phase2 = text.partition('nova-vdpa: phase 2')
        # Every ping to the port's own MAC came back, none was lost.
        self.assertEqual(ipxe_guest.PINGS,
                         len(ipxe_guest.replies(phase1, address)))
        self.assertEqual([], ipxe_guest.lost(phase1, address))
        # With the wrong MAC nothing comes back.
        self.assertEqual([], ipxe_guest.replies(phase2, '10.20.0.3'))

        t = self.client.get_traffic(a.name)
        self.addDetail('traffic', content.text_content(repr(t)))
        self.assertGreaterEqual(t.tx_packets, 2 * ipxe_guest.PINGS)
        self.assertEqual(0, t.tx_errors)
        self.assertEqual(0, t.tx_drops)
        self.assertEqual(0, t.rx_errors)
        self.assertEqual(0, t.rx_overruns)
        # The filter dropped what phase 2 sent to the wrong MAC, and only
        # that: every other frame came back.
        self.assertGreater(t.rx_drops, 0)
        self.assertEqual(t.tx_packets, t.rx_packets + t.rx_drops)
        # The guest's own totals agree with the device's.
        tx, txe, rx, rxe = ipxe_guest.ifstat(text)[-1]
        self.assertEqual((t.tx_packets, 0), (tx, txe))
        # iPXE counts every frame it got as RX, those it had no use for
        # (RXE: "Operation not supported") among them.
        self.assertEqual(t.rx_packets, rx)
        # iproute2 reads the same counters.
        rx_q, tx_q = self.vstats(a.name, 0), self.vstats(a.name, 1)
        self.assertEqual(t.tx_packets, _stat(tx_q, 'tx packets'))
        self.assertEqual(t.rx_packets, _stat(rx_q, 'rx packets'))
        self.assertEqual(t.rx_drops, _stat(rx_q, 'rx drops'))


def _stat(queue, name: str) -> int:
    """One counter of ``vdpa -j dev vstats show``.

    iproute2 prints each vendor statistic as a key of its own (``"rx
    packets": 12``), beside ``queue_type``; found wherever it is nested.
    """
    if isinstance(queue, dict):
        if isinstance(queue.get(name), int):
            return queue[name]
        children = list(queue.values())
    elif isinstance(queue, list):
        children = queue
    else:
        children = []
    for child in children:
        try:
            return _stat(child, name)
        except LookupError:
            pass
    raise LookupError('no %r in %r' % (name, queue))


class TestVirtualAddressDevice(DatapathTestCase):

    def setUp(self):
        super().setUp()
        reload_vdpa_sim(use_va=True)
        # After the guests are gone (cleanups run last first), before the
        # class's own cleanup: the module unloads only without devices.
        self.addCleanup(self._back_to_physical_addresses)

    def _back_to_physical_addresses(self):
        self._delete_all()
        reload_vdpa_sim(use_va=False)

    def test_virtual_addresses_need_shared_memory(self):
        self.assertTrue(self.alloc.uses_virtual_addresses(SIM))
        self.assertTrue(sysfs_mod.VdpaSysfs().uses_virtual_addresses(SIM))
        port = designer.Port(mac=allocator_base.MAC % 1, id='p1')
        e = self.assertRaises(exception.SharedGuestMemoryRequired,
                              designer.check_guest_memory, port, SIM,
                              flavor=PLAIN)
        self.assertIn('hw:mem_page_size', str(e))
        designer.check_guest_memory(port, SIM, flavor=PLAIN,
                                    file_backed_memory=1024)

        private_a, private_if = self.port_interface(1)
        shared_a, shared_if = self.port_interface(2)
        private = self.start('nova-vdpa-va-private', [private_if],
                             '10.21.0.2')
        shared = self.start('nova-vdpa-va-shared', [shared_if],
                            '10.22.0.2', shared_memory=True)
        text = ipxe_guest.wait_for(shared, ipxe_guest.END, GUEST_TIMEOUT)
        phase1 = text.partition('nova-vdpa: phase 2')[0]
        # Frames flow (this test compares memory backings; TestDatapath
        # holds the device to no loss): under nested TCG iPXE itself
        # counted one receive error (RXE) in a run of 20.
        replies = ipxe_guest.replies(phase1, '10.22.0.2')
        self.assertTrue(replies, phase1[-2000:])
        t = self.client.get_traffic(shared_a.name)
        self.assertGreaterEqual(t.rx_packets, 2 * len(replies))
        self.assertEqual(0, t.tx_errors)

        text = ipxe_guest.wait_for(private, ipxe_guest.END, GUEST_TIMEOUT)
        self.assertEqual([], ipxe_guest.replies(text, '10.21.0.2'))
        t = self.client.get_traffic(private_a.name)
        self.addDetail('private traffic', content.text_content(repr(t)))
        # The device could not read the guest's rings: nothing came back.
        self.assertEqual(0, t.rx_packets)


def reload_vdpa_sim(use_va: bool) -> None:
    """Load vdpa_sim again with ``use_va`` (read-only once loaded).

    Every vdpa_sim device must be gone (the allocator's tests delete
    theirs at cleanup).
    """
    for argv in (['modprobe', '-r', 'vdpa_sim_net', 'vdpa_sim'],
                 ['modprobe', 'vdpa_sim', 'use_va=%d' % use_va],
                 ['modprobe', 'vdpa_sim_net']):
        subprocess.run(argv, check=True, capture_output=True, timeout=60)

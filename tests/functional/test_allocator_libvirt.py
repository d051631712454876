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

"""The allocator's chardev, in a guest the bed's real libvirtd starts.

A port's device is allocated through the privsep daemon, the designer
renders the guest interface from what the allocator reports, libvirt
starts a paused guest with it, QEMU holds the chardev, release is refused
at once, and succeeds once the guest is gone.
"""

import uuid

from lxml import etree
from nova import objects
from nova.virt.libvirt import config as vconfig

from nova_vdpa import allocator
from nova_vdpa import exception
from nova_vdpa.libvirt import designer
from tests.functional import allocator_base

objects.register_all()  # the designer takes Nova's Flavor

DOMAIN = 'nova-vdpa-alloc'
PORT = '7c0e3f5a-1d2b-4c3d-8e4f-5a6b7c8d9eff'
MAC = 'fa:16:3e:7a:00:ff'


def guest_xml(interface) -> str:
    """A tiny TCG guest, built with Nova's own config classes."""
    guest = vconfig.LibvirtConfigGuest()
    guest.virt_type = 'qemu'
    guest.name = DOMAIN
    guest.uuid = str(uuid.uuid4())
    guest.memory = 128 * 1024
    guest.vcpus = 2
    guest.os_type = 'hvm'
    guest.os_mach_type = 'q35'
    guest.add_device(interface)
    return guest.to_xml()


class TestGuest(allocator_base.AllocatorBedTestCase):

    services = ('libvirt',)

    def test_allocated_chardev_starts_a_paused_guest(self):
        import libvirt
        conn = libvirt.open('qemu:///system')
        self.addCleanup(conn.close)
        a = self.alloc.allocate(allocator.PortRequest(
            port_id=PORT, vf_address=allocator_base.SIM_VF, mac=MAC,
            mtu=1500, queue_pairs=2))
        iface = designer.get_vdpa_interface_config(
            designer.Port(mac=MAC, mtu=1500),
            designer.device_of(a),
            designer.Host(libvirt_version=conn.getLibVersion(),
                          qemu_version=conn.getVersion()),
            flavor=objects.Flavor(
                name='m1.alloc', vcpus=2,
                extra_specs={'hw:vif_multiqueue_enabled': 'true'}))
        dom = conn.defineXML(guest_xml(iface))
        self.addCleanup(dom.undefine)
        dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
        self.addCleanup(lambda: dom.isActive() and dom.destroy())

        [node] = etree.fromstring(dom.XMLDesc(0)).findall(
            "./devices/interface[@type='vdpa']")
        self.assertEqual(a.chardev, node.find('source').get('dev'))
        self.assertEqual(MAC, node.find('mac').get('address'))
        self.assertTrue(self.sysfs.is_open(a.chardev))

        e = self.assertRaises(exception.VdpaDeviceInUse, self.alloc.release,
                              PORT, allocator_base.SIM_VF)
        self.assertIn(a.name, str(e))
        self.assertEqual(a, self.alloc.lookup(PORT, allocator_base.SIM_VF))

        dom.destroy()
        self.alloc.release(PORT, allocator_base.SIM_VF)
        self.assertEqual({}, self.devices())

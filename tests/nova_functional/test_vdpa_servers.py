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

"""Nova 34.0.0's own ``VDPAServersTest`` against LibvirtVdpaDriver.

The 17 tests of ``nova.tests.functional.libvirt.test_pci_sriov_servers.
VDPAServersTest`` from the nova wheel run twice, with Nova's fake libvirt
above the driver and a fake kernel (``tests.unit.fake_kernel``, one per
compute host) below our kernel boundary:

* :class:`VDPAServersOnDemandTest`: NO pre-created vDPA devices. libvirt
  has no vdpa node devices; each VF of the fake ConnectX-6 Dx has an
  mlx5-like management device (one device per VF, ENOSPC for a second).
  The driver types the VFs ``vdpa`` and creates each port's device.
* :class:`VDPAServersPrecreatedTest`: upstream's model. libvirt lists the
  four vdpa node devices upstream's test makes, and the kernel carries the
  operator's devices ``vdpa0``..``vdpa3`` on those VFs (no prefix of
  ours), bound to vhost_vdpa. The driver adopts them and never deletes
  them (checked after every test).

Adaptations, each because the test asserts upstream's model:

* ``start_vdpa_compute``: upstream's, with the vdpa node devices left out
  (on demand) or mirrored by operator devices in the host's kernel
  (pre-created). Nothing else about the host changes.
* ``create_vdpa_port``: upstream's port has MAC ``b5:bc:2e:e7:51:ee``,
  a multicast address (first octet odd). Upstream never hands the MAC to
  a device, so it goes unnoticed; libvirt refuses a multicast MAC at
  define time and nova-vdpa refuses it before the kernel (a non-retried
  InvalidInput). The port gets the unicast ``b4:bc:2e:e7:51:ee``.
* ``test_create_server``: upstream's checks the guest XML for the
  two-element interface (``<mac>``, ``<source dev='/dev/vhost-vdpa-3'>``)
  that only upstream renders. Ours checks the designer's interface (MAC,
  ``<model type='virtio'/>``, the chardev the kernel gave the VF's device)
  and keeps every other assertion of upstream's (PCI counts, binding
  profile).
* ``[nova_vdpa] offload_checks`` is off: upstream's VFs exist only in
  the fake libvirt, with no PF in switchdev mode and no representor, so
  the checks would refuse every port (tests/nova_functional/test_driver.py
  runs them on a fake offload host).
* Both classes check after each test that the kernel holds no device of
  ours whose MAC no guest on that host uses, and (pre-created) that every
  operator device is still there.
"""

from lxml import etree
from nova.tests.functional.libvirt import test_pci_sriov_servers as upstream
import nova.virt.libvirt.guest

from nova_vdpa import allocator as vdpa_allocator
from tests.nova_functional import vdpa_base


class _VdpaDriverMixin(vdpa_base.VdpaDriverMixin):
    """Upstream's tests with our test_create_server."""

    def test_create_server(self):
        """Create an instance using a neutron-provisioned vDPA VIF."""
        created = []
        orig_create = nova.virt.libvirt.guest.Guest.create

        def fake_create(cls, xml, host):
            created.append(etree.fromstring(xml).find(
                './devices/interface/[@type="vdpa"]'))
            return orig_create(xml, host)

        self.stub_out('nova.virt.libvirt.guest.Guest.create', fake_create)

        hostname = self.start_vdpa_compute()
        num_pci = self.NUM_PFS + self.NUM_VFS
        self.assertPCIDeviceCounts(hostname, total=num_pci, free=num_pci)
        vdpa_port = self.create_vdpa_port()
        port = self.neutron.show_port(vdpa_port['id'])['port']
        self.assertNotIn('binding:profile', port)

        self._create_server(networks=[{'port': vdpa_port['id']}])

        self.assertPCIDeviceCounts(hostname, total=num_pci, free=num_pci - 2)
        port = self.neutron.show_port(vdpa_port['id'])['port']
        self.assertEqual(
            {'pci_vendor_info': '15b3:101e', 'pci_slot': '0000:06:00.4',
             'physical_network': 'physnet4'},
            port['binding:profile'])

        kernel = self.kernels.kernel(hostname)
        (device,) = [d for d in kernel.devices.values()
                     if d.mgmtdev.name == '0000:06:00.4']
        if self.PRECREATED:
            self.assertEqual('vdpa3', device.name)
        else:
            self.assertEqual(vdpa_allocator.device_name(vdpa_port['id']),
                             device.name)
            self.assertEqual(vdpa_port['mac_address'], device.mac)
        (elem,) = created
        self.assertEqual(vdpa_port['mac_address'],
                         elem.find('mac').get('address'))
        self.assertEqual(kernel.node(device),
                         elem.find('source').get('dev'))
        self.assertEqual('virtio', elem.find('model').get('type'))


class VDPAServersOnDemandTest(_VdpaDriverMixin, upstream.VDPAServersTest):
    """Upstream's tests, no pre-created device: the driver makes them."""


class VDPAServersPrecreatedTest(_VdpaDriverMixin, upstream.VDPAServersTest):
    """Upstream's tests on operator-made devices: adopted, never deleted."""

    PRECREATED = True

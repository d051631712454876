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

from unittest import mock

from lxml import etree
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.libvirt import test_pci_sriov_servers as upstream
import nova.virt.libvirt.guest
from oslo_config import cfg

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa.compute import driver as vdpa_driver
from nova_vdpa import conf as vdpa_conf
from tests.unit.compute import kernels
from tests.unit import fake_kernel

CONF = cfg.CONF

#: upstream's b5:... with the multicast (I/G) bit cleared
UNICAST_MAC = 'b4:bc:2e:e7:51:ee'
#: the VFs upstream's start_vdpa_compute makes: 0000:06:00.1 - .4
VF_ADDRESSES = ['0000:06:00.%d' % f for f in range(1, 5)]


class _VdpaDriverMixin:
    """Runs the upstream tests on LibvirtVdpaDriver over fake kernels."""

    PRECREATED = False

    def setUp(self):
        self.kernels = self.useFixture(kernels.FakeHostKernels(
            default=lambda: [fake_kernel.mlx5_vf(a) for a in VF_ADDRESSES]))
        super().setUp()
        self.addCleanup(self._check_kernels)

    def _setup_compute_service(self):
        self.flags(compute_driver='nova_vdpa.LibvirtVdpaDriver')
        vdpa_conf.register_opts(CONF)
        self.flags(offload_checks=False, group=vdpa_driver.option_group())

    def start_vdpa_compute(self, hostname='compute-0'):
        made = []
        real_add = fakelibvirt.HostVDPADevicesInfo.add_device

        def add_device(info, name, idx, parent):
            made.append((idx, parent))
            if self.PRECREATED:
                return real_add(info, name, idx, parent)

        with mock.patch.object(fakelibvirt.HostVDPADevicesInfo,
                               'add_device', add_device):
            hostname = super().start_vdpa_compute(hostname=hostname)
        if self.PRECREATED:
            self._make_operator_devices(hostname, made)
        return hostname

    def create_vdpa_port(self):
        real_create = self.neutron.create_port

        def create_port(body):
            body['port']['mac_address'] = UNICAST_MAC
            return real_create(body)

        with mock.patch.object(self.neutron, 'create_port', create_port):
            return super().create_vdpa_port()

    def _make_operator_devices(self, hostname, made):
        kernel = self.kernels.kernel(hostname)
        client = kernel.client()
        self.addCleanup(client.close)
        for idx, parent in made:
            address = '0000:%02x:%02x.%d' % (parent.bus, parent.slot,
                                             parent.function)
            name = 'vdpa%d' % idx
            if name not in kernel.devices:  # a restarted compute
                client.create_device(name, 'pci/' + address)
                kernel.sysfs().bind(name)

    def _check_kernels(self):
        # By MAC: the fake libvirt keeps no <source dev> for an interface
        # it attached (its attachDevice reads only a bridge source).
        for host, kernel in self.kernels.kernels.items():
            macs = set()
            compute = getattr(self, 'computes', {}).get(host)
            if compute is not None:
                conn = compute.driver._host.get_connection()
                for dom in conn._vms.values():
                    macs.update(nic.get('mac')
                                for nic in dom._def['devices']['nics'])
            for name, dev in kernel.devices.items():
                if vdpa_allocator.is_ours(name):
                    self.assertIn(dev.mac, macs,
                                  '%s: %s left behind' % (host, name))
            if self.PRECREATED:
                self.assertEqual(
                    {'vdpa%d' % i for i in range(len(VF_ADDRESSES))},
                    {n for n in kernel.devices
                     if not vdpa_allocator.is_ours(n)}, host)

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

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

"""The PCI inventory, the interface against its device, and the errors Nova
gets: Nova's fake libvirt above, the fake kernel below.

* the guest XML Nova's fake libvirt was given agrees with the vDPA device
  the fake kernel made for the same port (queues, ring sizes, packed, MTU);
* a kernel that cannot answer never fails Nova's resource update;
* only the VFs an operator listed are typed vdpa, and never one Nova's PCI
  tracker gave to a ``direct`` port;
* a kernel EINVAL on create reschedules, a flavor/image conflict does not,
  and the fault a tenant reads names nothing of the host.
"""

import types

import fixtures
from lxml import etree
from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.libvirt import base as libvirt_base
from oslo_serialization import jsonutils
from oslo_utils.fixture import uuidsentinel as uuids

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa.compute import driver as vdpa_driver
from tests.nova_functional import test_driver
from tests.nova_functional import test_release_and_restart as servers

VFS = servers.VFS


def _vdpa_interfaces(domain_xml):
    return etree.fromstring(domain_xml).findall(
        "./devices/interface[@type='vdpa']")


class TestDriverInventory(test_driver.DriverTestCase):

    def dev_types(self):
        devices = jsonutils.loads(self.driver._get_pci_passthrough_devices())
        return {d['address']: d['dev_type'] for d in devices}

    def reload(self, **flags):
        self.flags(group=vdpa_driver.option_group(), **flags)
        self.driver = test_driver.virt_driver.load_compute_driver(
            test_driver.fake_virt.FakeVirtAPI(), 'nova_vdpa.LibvirtVdpaDriver')

    def test_empty_management_devices_types_no_vf(self):
        # mlx5_vdpa loaded does not make every VF of device_spec vdpa.
        self.reload(management_devices=[])
        self.assertEqual({'type-VF'}, {t for a, t in self.dev_types().items()
                                       if a != test_driver.PF})

    def test_vf_held_by_nova_as_type_vf_is_not_retyped(self):
        # Nova's PCI tracker (the compute manager's resource tracker, seen
        # through the virt API) gave VFS[0] to a direct port.
        pci_devs = [
            objects.PciDevice(address=test_driver.VFS[0], dev_type='type-VF',
                              status='allocated'),
            objects.PciDevice(address=test_driver.VFS[1], dev_type='type-VF',
                              status='available')]
        self.driver.virtapi._compute = types.SimpleNamespace(
            rt=types.SimpleNamespace(
                pci_tracker=types.SimpleNamespace(pci_devs=pci_devs)))
        types_ = self.dev_types()
        self.assertEqual('type-VF', types_[test_driver.VFS[0]])
        self.assertEqual('vdpa', types_[test_driver.VFS[1]])

    def test_kernel_not_loaded_keeps_the_last_typing_and_warns_once(self):
        log = self.useFixture(test_driver.LogRecords())
        self.assertEqual('vdpa', self.dev_types()[test_driver.VFS[0]])
        self.kernel.unload()
        for _ in range(3):
            types_ = self.dev_types()
            self.assertEqual('vdpa', types_[test_driver.VFS[0]])
            self.assertEqual('type-PF', types_[test_driver.PF])
        self.assertEqual(1, log.output.count(
            'cannot be read from the kernel'))
        self.kernel.load()
        self.kernel.mgmtdevs.pop(0)
        self.assertEqual('type-VF', self.dev_types()[test_driver.VFS[0]])
        self.assertEqual(1, log.output.count('The kernel answers again'))

    def test_kernel_not_loaded_at_start_types_nothing(self):
        self.kernel.unload()
        types_ = self.dev_types()
        self.assertEqual('type-PF', types_[test_driver.PF])
        self.assertEqual({'type-VF'}, {t for a, t in types_.items()
                                       if a != test_driver.PF})


class TestDriverErrors(test_driver.DriverTestCase):

    def test_kernel_einval_on_create_reschedules(self):
        # This NIC's firmware refuses the port's MTU: the kernel fails
        # the creation with EINVAL; another host may accept it.
        for m in self.kernel.mgmtdevs:
            m.max_mtu = 1280
        ex = self.assertRaises(nova_exception.ComputeResourcesUnavailable,
                               self.get_config, test_driver.make_vif())
        message = ex.format_message()
        self.assertIn(uuids.port, message)
        for host_detail in ('pci/', test_driver.VFS[0], '/dev/', '/sys',
                            'errno', 'nvdpa-'):
            self.assertNotIn(host_detail, message)
        self.assertEqual({}, self.kernel.devices)

    def test_flavor_and_image_multiqueue_conflict_is_invalid_input(self):
        self.instance.flavor.name = 'm1.vdpa'
        self.instance.flavor.extra_specs = {
            'hw:vif_multiqueue_enabled': 'false'}
        self.image_meta = objects.ImageMeta.from_dict(
            {'name': 'guest-image',
             'properties': {'hw_vif_multiqueue_enabled': True}})
        ex = self.assertRaises(nova_exception.InvalidInput,
                               self.get_config, test_driver.make_vif())
        self.assertIn(uuids.port, ex.format_message())
        self.assertIn('multiqueue', ex.format_message())
        self.assertEqual({}, self.kernel.devices)


class TestInterfaceAgreesWithDevice(servers.VdpaServersBase):
    """Each setting that reaches the XML, against the device made."""

    def setUp(self):
        super().setUp()
        self.start_vdpa_compute()
        self.port = self.create_vdpa_port(uuids.port_a, 'fa:16:3e:00:00:11')

    def boot(self, vcpus=4, **extra_specs):
        # The XML Nova gives the fake libvirt: its XMLDesc re-renders only
        # what it parsed, without <driver>.
        defined = []
        real = fakelibvirt.Connection.defineXML

        def define(conn, xml):
            defined.append(xml)
            return real(conn, xml)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Connection.defineXML', define))
        flavor = self._create_flavor(vcpu=vcpus, extra_spec=extra_specs)
        server = self._create_server(
            flavor_id=flavor, networks=[{'port': self.port['id']}])
        (iface,) = _vdpa_interfaces(defined[-1])
        device = self.ours()[vdpa_allocator.device_name(self.port['id'])]
        found = self.driver().vdpa_allocator.lookup(self.port['id'],
                                                    device.mgmtdev.name)
        return server, iface, device, found

    def test_queues_follow_max_queues_on_both_ends(self):
        self.flags(max_queues=2, group='libvirt')
        _, iface, device, _ = self.boot(
            vcpus=4, **{'hw:vif_multiqueue_enabled': 'true'})
        self.assertEqual('2', iface.find('driver').get('queues'))
        # the device was made with the pairs the guest uses, not 4
        self.assertEqual(2, device.max_vqp)

    def test_queues_without_max_queues_are_the_vcpus(self):
        _, iface, device, _ = self.boot(
            vcpus=3, **{'hw:vif_multiqueue_enabled': 'true'})
        self.assertEqual('3', iface.find('driver').get('queues'))
        self.assertEqual(3, device.max_vqp)

    def test_ring_sizes_fit_the_device(self):
        self.flags(rx_queue_size=1024, tx_queue_size=256, group='libvirt')
        _, iface, _, found = self.boot()
        driver = iface.find('driver')
        self.assertEqual(str(min(1024, found.device.max_vq_size)),
                         driver.get('rx_queue_size'))
        self.assertEqual(str(min(256, found.device.max_vq_size)),
                         driver.get('tx_queue_size'))

    def test_packed_only_when_the_device_offers_it(self):
        _, iface, device, _ = self.boot(**{'hw:virtio_packed_ring': 'true'})
        offered = bool(device.features >> 34 & 1)
        self.assertEqual('on' if offered else None,
                         iface.find('driver').get('packed'))

    def test_mtu_is_the_networks_on_the_device(self):
        _, iface, device, _ = self.boot()
        self.assertEqual(servers.MTU, device.mtu)
        # libvirt refuses <mtu> for vdpa: the guest reads the device's
        self.assertIsNone(iface.find('mtu'))


class TestKernelNotAnswering(servers.VdpaServersBase):
    """The vdpa modules not loaded: the host still takes servers."""

    def pci_types(self):
        ctx = nova_context.get_admin_context()
        node = objects.ComputeNode.get_by_nodename(ctx, 'compute-0')
        return {d.address: d.dev_type for d in
                objects.PciDeviceList.get_by_compute_node(ctx, node.id)}

    def test_compute_starts_and_recovers(self):
        kernel = self.kernel()
        kernel.unload()
        self.start_vdpa_compute()
        # the compute node record exists, the VFs are plain VFs
        self.assertEqual({'type-VF'}, {self.pci_types()[vf] for vf in VFS})
        server = self._create_server(networks='none')
        self.assertEqual('ACTIVE', server['status'])
        self._run_periodics()
        self.assertEqual(1, self.log().count(
            'cannot be read from the kernel'))

        kernel.load()
        self._run_periodics()
        self.assertEqual(1, self.log().count('The kernel answers again'))
        types_ = {d['address']: d['dev_type'] for d in jsonutils.loads(
            self.driver()._get_pci_passthrough_devices())}
        self.assertEqual({'vdpa'}, {types_[vf] for vf in VFS})
        # Nova 34's tracker takes the inventory in at its first update
        # only: its records follow after a restart.
        self.restart_compute_service('compute-0')
        self.assertEqual({'vdpa'}, {self.pci_types()[vf] for vf in VFS})


class TestTypingRules(servers.VdpaServersBase):
    """Which VFs become vdpa, with Nova's own PCI tracker."""

    def test_vf_given_to_a_direct_port_stays_a_vf(self):
        kernel = self.kernel()
        # mlx5_vdpa not loaded yet: the VFs are plain VFs
        mgmtdevs, kernel.mgmtdevs[:] = list(kernel.mgmtdevs), []
        self.start_vdpa_compute()
        port = dict(libvirt_base.LibvirtNeutronFixture.network_4_port_1)
        self.neutron.create_port({'port': port})
        self._create_server(networks=[{'port': port['id']}])
        ctx = nova_context.get_admin_context()
        node = objects.ComputeNode.get_by_nodename(ctx, 'compute-0')
        (given,) = [d.address for d in
                    objects.PciDeviceList.get_by_compute_node(ctx, node.id)
                    if d.status == 'allocated']

        kernel.mgmtdevs[:] = mgmtdevs  # now loaded: every VF could be vdpa
        self._run_periodics()
        types_ = {d['address']: d['dev_type'] for d in jsonutils.loads(
            self.driver()._get_pci_passthrough_devices())}
        self.assertEqual('type-VF', types_[given])
        self.assertEqual({'vdpa'}, {types_[vf] for vf in VFS if vf != given})
        # a restart (the inventory Nova's tracker takes in, read before
        # the tracker exists): the same, from the database
        self.restart_compute_service('compute-0')
        types_ = {d['address']: d['dev_type'] for d in jsonutils.loads(
            self.driver()._get_pci_passthrough_devices())}
        self.assertEqual('type-VF', types_[given])
        rows = {d.address: d.dev_type for d in
                objects.PciDeviceList.get_by_compute_node(ctx, node.id)}
        self.assertEqual('type-VF', rows[given])
        self.assertEqual({'vdpa'}, {rows[vf] for vf in VFS if vf != given})


class TestNicRefusesSettings(servers.VdpaServersBase):
    """A kernel EINVAL on create: rescheduled, the fault free of the host."""

    def test_einval_reschedules(self):
        for m in self.kernel().mgmtdevs:
            m.max_mtu = 1280  # below the port's: the firmware refuses it
        self.start_vdpa_compute()
        port = self.create_vdpa_port(uuids.port_a, 'fa:16:3e:00:00:11')
        server = self._create_server(networks=[{'port': port['id']}],
                                     expected_state='ERROR')
        fault = server['fault']['message']
        # rescheduled (no other host here), not aborted as invalid input
        self.assertIn('Exceeded maximum number of retries', fault)
        for host_detail in ('pci/', '0000:06:00', '/dev/', 'nvdpa-',
                            'errno'):
            self.assertNotIn(host_detail, fault)
        self.assertEqual({}, self.ours())

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

"""LibvirtVdpaDriver under Nova's test bases, on Nova's fake libvirt and a
fake kernel: what the kernel and the guest XML end up with.

These are the driver's unit tests, but they live beside VDPAServersTest and
run in the nova-functional env: importing Nova's test code patches the
process with eventlet and registers options on the global configuration,
which would leak into the project's other unit tests sharing a worker.
"""

import fixtures
from lxml import etree
from nova import exception as nova_exception
from nova.network import model as network_model
from nova import objects
from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.unit import fake_instance
from nova.virt import driver as virt_driver
from nova.virt import fake as fake_virt
from oslo_serialization import jsonutils
from oslo_utils.fixture import uuidsentinel as uuids

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa.compute import driver as vdpa_driver
from nova_vdpa.compute import overrides
from nova_vdpa.compute import vif as vdpa_vif
from tests.unit.compute import kernels
from tests.unit import fake_kernel

PF = '0000:81:00.0'
VFS = ['0000:81:00.%d' % i for i in range(1, 5)]
MAC = 'fa:16:3e:11:22:33'


def make_vif(port_id=uuids.port, vf=VFS[0], mtu=1400):
    network = network_model.Network(
        id=uuids.network, bridge='br-int', label='net', mtu=mtu,
        subnets=[])
    return network_model.VIF(
        id=port_id, address=MAC, network=network, type='ovs',
        vnic_type=network_model.VNIC_TYPE_VDPA,
        details={'port_filter': True}, devname='tap-' + port_id[:8],
        profile={'pci_slot': vf, 'pci_vendor_info': '15b3:101e',
                 'physical_network': 'physnet4'})


class DriverTestCase(test.NoDBTestCase):
    """A LibvirtVdpaDriver loaded the way nova-compute loads it."""

    #: VFs whose management device exists in the fake kernel
    vdpa_vfs = VFS[:2]

    def setUp(self):
        super().setUp()
        self.useFixture(nova_fixtures.LibvirtFixture())
        self.kernels = self.useFixture(kernels.FakeHostKernels(
            default=lambda: [fake_kernel.mlx5_vf(a) for a in self.vdpa_vfs]))
        self.conn = fakelibvirt.Connection(
            'qemu:///system', host_info=fakelibvirt.HostInfo(),
            pci_info=fakelibvirt.HostPCIDevicesInfo(
                num_pci=0, num_pfs=1, num_vfs=4))
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.host.Host.get_connection',
            return_value=self.conn))
        self.driver = virt_driver.load_compute_driver(
            fake_virt.FakeVirtAPI(), 'nova_vdpa.LibvirtVdpaDriver')
        self.kernel = self.kernels.kernel()
        self.instance = fake_instance.fake_instance_obj(
            None, uuid=uuids.instance, vcpus=2, memory_mb=512,
            flavor=objects.Flavor(vcpus=2, memory_mb=512, root_gb=1,
                                  ephemeral_gb=0, swap=0, extra_specs={}))
        self.image_meta = objects.ImageMeta.from_dict({'properties': {}})

    def get_config(self, vif):
        return self.driver.vif_driver.get_config(
            self.instance, vif, self.image_meta, self.instance.flavor, 'kvm')

    def start_guest(self, *interfaces):
        xml = ("<domain type='kvm'><name>instance-0001</name><uuid>%s</uuid>"
               "<memory>524288</memory><vcpu>1</vcpu><os><type>hvm</type>"
               "</os><devices>%s</devices></domain>"
               % (uuids.instance, ''.join(i.to_xml() for i in interfaces)))
        return self.conn.createXML(xml, 0)


class TestLoading(DriverTestCase):

    def test_loaded_through_nova_loader(self):
        self.assertIsInstance(self.driver, vdpa_driver.LibvirtVdpaDriver)
        self.assertIsInstance(self.driver.vif_driver,
                              vdpa_vif.LibvirtVdpaVIFDriver)
        # registered at construction: the group is readable now
        group = vdpa_driver.CONF[vdpa_driver.option_group()]
        self.assertEqual([], group.management_devices)

    def test_every_private_name_exists(self):
        for entry in overrides.PRIVATE_NAMES:
            owner = (self.driver if entry.on_instance else
                     getattr(__import__(entry.module, fromlist=['x']),
                             entry.cls))
            self.assertTrue(hasattr(owner, entry.name), entry)

    def test_missing_private_name_refuses_to_start(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.compute.overrides.PRIVATE_NAMES',
            overrides.PRIVATE_NAMES + (overrides.PrivateName(
                'nova.virt.libvirt.driver', 'LibvirtDriver',
                '_gone_in_a_later_nova', 'test'),)))
        ex = self.assertRaises(
            overrides.NovaIncompatible, virt_driver.load_compute_driver,
            fake_virt.FakeVirtAPI(), 'nova_vdpa.LibvirtVdpaDriver')
        self.assertIn('LibvirtDriver._gone_in_a_later_nova', str(ex))
        self.assertIn(overrides.NOVA_RELEASE, str(ex))


class TestInventory(DriverTestCase):

    def dev_types(self):
        devices = jsonutils.loads(self.driver._get_pci_passthrough_devices())
        return {d['address']: d['dev_type'] for d in devices}

    def test_vfs_with_a_management_device_are_vdpa(self):
        self.assertEqual({PF: 'type-PF', VFS[0]: 'vdpa', VFS[1]: 'vdpa',
                          VFS[2]: 'type-VF', VFS[3]: 'type-VF'},
                         self.dev_types())

    def test_management_device_appearing_later_is_seen_without_restart(self):
        self.dev_types()
        self.kernel.mgmtdevs.append(fake_kernel.mlx5_vf(VFS[3]))
        self.assertEqual('vdpa', self.dev_types()[VFS[3]])
        self.kernel.mgmtdevs.pop()
        self.assertEqual('type-VF', self.dev_types()[VFS[3]])

    def test_allowed_management_devices_limit_the_vdpa_vfs(self):
        self.flags(management_devices=['pci/' + VFS[1]],
                   group=vdpa_driver.option_group())
        self.driver = virt_driver.load_compute_driver(
            fake_virt.FakeVirtAPI(), 'nova_vdpa.LibvirtVdpaDriver')
        types = self.dev_types()
        self.assertEqual('type-VF', types[VFS[0]])
        self.assertEqual('vdpa', types[VFS[1]])


class TestVif(DriverTestCase):

    def test_device_created_before_the_xml_names_it(self):
        conf = self.get_config(make_vif())
        name = vdpa_allocator.device_name(uuids.port)
        dev = self.kernel.devices[name]
        self.assertEqual(MAC, dev.mac)
        self.assertEqual(1400, dev.mtu)
        self.assertEqual('pci/' + VFS[0], dev.mgmtdev.handle)
        self.assertEqual('vhost_vdpa', dev.driver)
        xml = etree.fromstring(conf.to_xml())
        self.assertEqual('vdpa', xml.get('type'))
        self.assertEqual(self.kernel.node(dev),
                         xml.find('source').get('dev'))
        self.assertEqual(MAC, xml.find('mac').get('address'))
        # the designer's interface, not upstream's two elements
        self.assertEqual('virtio', xml.find('model').get('type'))

    def test_allocation_is_idempotent(self):
        first = self.get_config(make_vif())
        second = self.get_config(make_vif())
        self.assertEqual(first.to_xml(), second.to_xml())
        self.assertEqual([vdpa_allocator.device_name(uuids.port)],
                         list(self.kernel.devices))

    def test_running_guest_interface_found_for_detach(self):
        conf = self.get_config(make_vif())
        self.start_guest(conf)
        guest = self.driver._host.get_guest(self.instance)
        # what detach_interface does to find the live interface
        self.assertIsNotNone(guest.get_interface_by_cfg(conf))

    def test_unplug_releases_the_device(self):
        self.get_config(make_vif())
        self.driver.vif_driver.unplug(self.instance, make_vif())
        self.assertEqual({}, self.kernel.devices)
        # and again: idempotent
        self.driver.vif_driver.unplug(self.instance, make_vif())

    def test_held_device_is_kept_and_the_holder_named(self):
        conf = self.get_config(make_vif())
        self.start_guest(conf)
        name = vdpa_allocator.device_name(uuids.port)
        self.kernel.open_chardev(name)
        self.addCleanup(self.kernel.close_chardev, name)
        self.driver.vif_driver.unplug(self.instance, make_vif())
        self.assertIn(name, self.kernel.devices)
        log = self.stdlog.logger.output
        self.assertIn('libvirt domain instance-0001 (instance %s)'
                      % uuids.instance, log)

    def test_operator_device_is_adopted_and_never_deleted(self):
        client = self.kernel.client()
        self.addCleanup(client.close)
        client.create_device('vdpa0', 'pci/' + VFS[1],
                             mac='fa:16:3e:00:00:01')
        self.kernel.sysfs().bind('vdpa0')
        conf = self.get_config(make_vif(vf=VFS[1]))
        self.assertEqual(self.kernel.node(self.kernel.devices['vdpa0']),
                         conf.source_dev)
        self.driver.vif_driver.unplug(self.instance, make_vif(vf=VFS[1]))
        self.assertEqual(['vdpa0'], list(self.kernel.devices))

    def test_vf_without_vdpa_reschedules(self):
        ex = self.assertRaises(nova_exception.ComputeResourcesUnavailable,
                               self.get_config, make_vif(vf=VFS[3]))
        self.assertIn(uuids.port, ex.format_message())
        self.assertNotIn(VFS[3], ex.format_message())
        self.assertEqual({}, self.kernel.devices)

    def test_non_vdpa_vif_goes_to_nova(self):
        vif = make_vif()
        vif['vnic_type'] = network_model.VNIC_TYPE_NORMAL
        vif['profile'] = {}
        conf = self.get_config(vif)
        self.assertNotEqual('vdpa', conf.net_type)
        self.assertEqual({}, self.kernel.devices)

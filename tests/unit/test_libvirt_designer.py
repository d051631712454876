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

"""Every decision of the vdpa interface designer."""

import fixtures
import testtools

from nova_vdpa import exception
from nova_vdpa.libvirt import config
from nova_vdpa.libvirt import designer
from tests.unit.test_libvirt_config import xml_tree

PORT = designer.Port(mac='fa:16:3e:00:00:01', mtu=1500)
DEVICE = designer.Device(chardev='/dev/vhost-vdpa-0', max_queue_pairs=8,
                         max_vq_size=1024)
# libvirt 9.0.0, QEMU 7.2.0: the test bed's
HOST = designer.Host(libvirt_version=9000000, qemu_version=7002000)
OLD_HOST = designer.Host(libvirt_version=6009000, qemu_version=5001000)


def design(port=PORT, device=DEVICE, host=HOST, vcpus=4, **kwargs):
    return designer.get_vdpa_interface_config(port, device, host,
                                              vcpus=vcpus, **kwargs)


def driver_attrs(conf):
    """The <driver> element's attributes ({} without one)."""
    for tag, attrs, _ in xml_tree(conf.format_dom())[2]:
        if tag == 'driver':
            return attrs
    return {}


class TestVersions(testtools.TestCase):

    def test_libvirt_too_old(self):
        e = self.assertRaises(
            exception.HypervisorTooOld, design,
            host=designer.Host(libvirt_version=6008000, qemu_version=7002000))
        self.assertEqual('vDPA interfaces need libvirt >= 6.9.0, this host '
                         'has libvirt 6.8.0', str(e))

    def test_qemu_too_old(self):
        e = self.assertRaises(
            exception.HypervisorTooOld, design,
            host=designer.Host(libvirt_version=9000000, qemu_version=5000001))
        self.assertEqual('vDPA interfaces need QEMU >= 5.1.0, this host '
                         'has QEMU 5.0.1', str(e))

    def test_minimum_versions_work(self):
        conf = design(host=OLD_HOST)
        self.assertEqual(
            ('interface', {'type': 'vdpa'}, [
                ('mac', {'address': 'fa:16:3e:00:00:01'}, []),
                ('source', {'dev': '/dev/vhost-vdpa-0'}, []),
                ('model', {'type': 'virtio'}, []),
            ]),
            xml_tree(conf.format_dom()))

    def test_page_per_vq_from_libvirt_7_9_0(self):
        for libvirt, expected in ((7008000, {}),
                                  (7009000, {'page_per_vq': 'on'}),
                                  (9000000, {'page_per_vq': 'on'})):
            conf = design(host=designer.Host(libvirt_version=libvirt,
                                             qemu_version=7002000))
            self.assertEqual(expected, driver_attrs(conf), libvirt)

    def test_version_str(self):
        self.assertEqual('6.9.0', designer.version_str(6009000))
        self.assertEqual('10.10.1', designer.version_str(10010001))


class TestBasics(testtools.TestCase):

    def test_mac_source_model(self):
        conf = design()
        self.assertIsInstance(conf, config.LibvirtConfigGuestVdpaInterface)
        self.assertEqual('fa:16:3e:00:00:01', conf.mac_addr)
        self.assertEqual('/dev/vhost-vdpa-0', conf.source_dev)
        self.assertEqual('virtio', conf.model)
        self.assertIsNone(conf.alias)
        self.assertIsNone(conf.device_addr)
        self.assertIsNone(conf.boot_order)


class TestMtu(testtools.TestCase):
    """libvirt rejects <mtu> on vdpa interfaces: never rendered."""

    def test_network_mtu_present_is_not_rendered(self):
        for mtu in (1450, 1500, 9000):
            conf = design(port=designer.Port('fa:16:3e:00:00:01', mtu))
            self.assertIsNone(conf.mtu)
            self.assertNotIn('mtu', [c[0] for c in
                                     xml_tree(conf.format_dom())[2]])

    def test_network_mtu_absent(self):
        conf = design(port=designer.Port('fa:16:3e:00:00:01'))
        self.assertIsNone(conf.mtu)

    def test_device_mtu_differs_from_network_warns(self):
        logs = self.useFixture(fixtures.FakeLogger())
        device = designer.Device('/dev/vhost-vdpa-0', mtu=1500)
        conf = design(port=designer.Port('fa:16:3e:00:00:01', 9000),
                      device=device)
        self.assertIsNone(conf.mtu)
        self.assertIn('has MTU 1500 but the network of port '
                      'fa:16:3e:00:00:01 has MTU 9000', logs.output)

    def test_device_mtu_matches_no_warning(self):
        logs = self.useFixture(fixtures.FakeLogger())
        design(port=designer.Port('fa:16:3e:00:00:01', 9000),
               device=designer.Device('/dev/vhost-vdpa-0', mtu=9000))
        design(port=designer.Port('fa:16:3e:00:00:01'),
               device=designer.Device('/dev/vhost-vdpa-0', mtu=9000))
        self.assertEqual('', logs.output)


class TestMultiqueue(testtools.TestCase):

    def queues(self, vcpus=4, pairs=8, specs=None, props=None):
        device = designer.Device('/dev/vhost-vdpa-0', max_queue_pairs=pairs)
        return design(device=device, vcpus=vcpus, extra_specs=specs,
                      image_props=props).vhost_queues

    def test_not_requested(self):
        self.assertIsNone(self.queues())
        self.assertIsNone(self.queues(
            specs={'hw:vif_multiqueue_enabled': 'false'}))
        self.assertIsNone(self.queues(
            props={'hw_vif_multiqueue_enabled': False}))

    def test_requested_by_flavor_or_image(self):
        self.assertEqual(4, self.queues(
            specs={'hw:vif_multiqueue_enabled': 'true'}))
        self.assertEqual(4, self.queues(
            props={'hw_vif_multiqueue_enabled': True}))
        self.assertEqual(4, self.queues(
            props={'hw_vif_multiqueue_enabled': 'yes'}))
        self.assertEqual(4, self.queues(
            specs={'hw:vif_multiqueue_enabled': 'True'},
            props={'hw_vif_multiqueue_enabled': True}))

    def test_capped_by_vcpus(self):
        self.assertEqual(2, self.queues(
            vcpus=2, pairs=8, specs={'hw:vif_multiqueue_enabled': 'true'}))

    def test_capped_by_device_queue_pairs(self):
        self.assertEqual(3, self.queues(
            vcpus=16, pairs=3, specs={'hw:vif_multiqueue_enabled': 'true'}))

    def test_one_queue_is_not_rendered(self):
        # A device without F_MQ (vdpa_sim_net), or a single vCPU: libvirt
        # would drop queues='1' anyway, and queues > 1 would be a no-op.
        on = {'hw:vif_multiqueue_enabled': 'true'}
        self.assertIsNone(self.queues(vcpus=8, pairs=1, specs=on))
        self.assertIsNone(self.queues(vcpus=1, pairs=8, specs=on))

    def test_flavor_image_conflict(self):
        e = self.assertRaises(
            exception.InvalidVdpaInterfaceRequest, self.queues,
            specs={'hw:vif_multiqueue_enabled': 'true'},
            props={'hw_vif_multiqueue_enabled': False})
        self.assertIn('hw:vif_multiqueue_enabled=true', str(e))

    def test_not_a_boolean(self):
        self.assertRaises(
            exception.InvalidVdpaInterfaceRequest, self.queues,
            specs={'hw:vif_multiqueue_enabled': 'maybe'})

    def test_queues_in_xml(self):
        conf = design(vcpus=2, extra_specs={'hw:vif_multiqueue_enabled': '1'})
        self.assertEqual({'queues': '2', 'page_per_vq': 'on'},
                         driver_attrs(conf))


class TestQueueSizes(testtools.TestCase):

    def test_not_configured(self):
        conf = design()
        self.assertIsNone(conf.vhost_rx_queue_size)
        self.assertIsNone(conf.vhost_tx_queue_size)

    def test_configured(self):
        conf = design(rx_queue_size=512, tx_queue_size=1024)
        self.assertEqual({'rx_queue_size': '512', 'tx_queue_size': '1024',
                          'page_per_vq': 'on'}, driver_attrs(conf))

    def test_capped_by_device_max_vq_size(self):
        device = designer.Device('/dev/vhost-vdpa-0', max_vq_size=512)
        conf = design(device=device, rx_queue_size=1024, tx_queue_size=256)
        self.assertEqual(512, conf.vhost_rx_queue_size)
        self.assertEqual(256, conf.vhost_tx_queue_size)

    def test_device_max_below_qemu_minimum_leaves_default(self):
        logs = self.useFixture(fixtures.FakeLogger())
        device = designer.Device('/dev/vhost-vdpa-0', max_vq_size=128)
        conf = design(device=device, rx_queue_size=512)
        self.assertIsNone(conf.vhost_rx_queue_size)
        self.assertIn('rx_queue_size = 512 cannot be used', logs.output)

    def test_unknown_device_max_uses_configured(self):
        device = designer.Device('/dev/vhost-vdpa-0')
        conf = design(device=device, rx_queue_size=1024)
        self.assertEqual(1024, conf.vhost_rx_queue_size)

    def test_not_a_power_of_two(self):
        self.useFixture(fixtures.FakeLogger())
        device = designer.Device('/dev/vhost-vdpa-0', max_vq_size=384)
        self.assertIsNone(design(device=device,
                                 rx_queue_size=512).vhost_rx_queue_size)


class TestPackedRing(testtools.TestCase):

    def packed(self, specs=None, props=None, features=None):
        device = designer.Device('/dev/vhost-vdpa-0', features=features)
        return design(device=device, extra_specs=specs,
                      image_props=props).driver_packed

    def test_not_requested(self):
        self.assertIsNone(self.packed())
        self.assertIsNone(self.packed(specs={'hw:virtio_packed_ring': 'no'}))

    def test_requested(self):
        self.assertIs(True, self.packed(
            specs={'hw:virtio_packed_ring': 'true'}))
        self.assertIs(True, self.packed(
            props={'hw_virtio_packed_ring': 'true'}))

    def test_conflict(self):
        self.assertRaises(
            exception.InvalidVdpaInterfaceRequest, self.packed,
            specs={'hw:virtio_packed_ring': 'false'},
            props={'hw_virtio_packed_ring': 'true'})

    def test_device_offers_packed(self):
        self.assertIs(True, self.packed(
            specs={'hw:virtio_packed_ring': 'true'},
            features=1 << designer.VIRTIO_F_RING_PACKED | 1 << 32))

    def test_device_without_packed(self):
        logs = self.useFixture(fixtures.FakeLogger())
        self.assertIsNone(self.packed(
            specs={'hw:virtio_packed_ring': 'true'}, features=1 << 32))
        self.assertIn('does not offer them', logs.output)

    def test_packed_in_xml(self):
        conf = design(image_props={'hw_virtio_packed_ring': True},
                      host=OLD_HOST)
        self.assertEqual({'packed': 'on'}, driver_attrs(conf))


class TestImageMetaProps(testtools.TestCase):

    def test_nova_image_meta_props(self):
        from nova import objects
        objects.register_all()
        props = objects.ImageMetaProps(hw_vif_multiqueue_enabled=True,
                                       hw_virtio_packed_ring=True)
        conf = design(vcpus=2, image_props=props)
        self.assertEqual(2, conf.vhost_queues)
        self.assertIs(True, conf.driver_packed)

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

"""Object <-> XML of the vdpa interface config."""

from lxml import etree
from nova.virt.libvirt import config as vconfig

from nova_vdpa import exception
from nova_vdpa.libvirt import config
from tests.unit import base


xml_tree = base.xml_tree


def full_config():
    conf = config.LibvirtConfigGuestVdpaInterface()
    conf.mac_addr = 'fa:16:3e:11:22:33'
    conf.source_dev = '/dev/vhost-vdpa-3'
    conf.model = 'virtio'
    conf.mtu = 9000
    conf.vhost_queues = 4
    conf.vhost_rx_queue_size = 512
    conf.vhost_tx_queue_size = 1024
    conf.driver_packed = True
    conf.driver_page_per_vq = False
    conf.alias = 'ua-port-1'
    conf.device_addr = config.pci_address(0, 0, 5, 0)
    conf.boot_order = 2
    return conf


def variants():
    """One config per optional value set alone, plus none and all."""
    yield 'minimal', config.LibvirtConfigGuestVdpaInterface()
    full = full_config()
    for field in config.LibvirtConfigGuestVdpaInterface.FIELDS:
        conf = config.LibvirtConfigGuestVdpaInterface()
        setattr(conf, field, getattr(full, field))
        yield field, conf
    yield 'packed off', _with(driver_packed=False, driver_page_per_vq=True)
    yield 'full', full


def _with(**values):
    conf = config.LibvirtConfigGuestVdpaInterface()
    for name, value in values.items():
        setattr(conf, name, value)
    return conf


class TestFormat(base.TestCase):

    def test_full(self):
        self.assertEqual(
            ('interface', {'type': 'vdpa'}, [
                ('mac', {'address': 'fa:16:3e:11:22:33'}, []),
                ('source', {'dev': '/dev/vhost-vdpa-3'}, []),
                ('model', {'type': 'virtio'}, []),
                ('driver', {'queues': '4', 'rx_queue_size': '512',
                            'tx_queue_size': '1024', 'packed': 'on',
                            'page_per_vq': 'off'}, []),
                ('mtu', {'size': '9000'}, []),
                ('boot', {'order': '2'}, []),
                ('alias', {'name': 'ua-port-1'}, []),
                ('address', {'type': 'pci', 'domain': '0x0000',
                             'bus': '0x00', 'slot': '0x05',
                             'function': '0x0'}, []),
            ]),
            xml_tree(full_config().format_dom()))

    def test_no_driver_element_without_driver_values(self):
        conf = _with(mac_addr='fa:16:3e:00:00:01', source_dev='/dev/x',
                     model='virtio')
        self.assertEqual(
            ('interface', {'type': 'vdpa'}, [
                ('mac', {'address': 'fa:16:3e:00:00:01'}, []),
                ('source', {'dev': '/dev/x'}, []),
                ('model', {'type': 'virtio'}, []),
            ]),
            xml_tree(conf.format_dom()))

    def test_same_as_nova_for_the_subset_nova_renders(self):
        nova = vconfig.LibvirtConfigGuestInterface()
        nova.net_type = 'vdpa'
        nova.mac_addr = 'fa:16:3e:00:00:01'
        nova.source_dev = '/dev/vhost-vdpa-0'
        nova.model = 'virtio'
        ours = _with(mac_addr=nova.mac_addr, source_dev=nova.source_dev,
                     model='virtio')
        tree = xml_tree(nova.format_dom())
        # Same elements; only the order differs (libvirt's schema
        # interleaves them).
        mine = xml_tree(ours.format_dom())
        self.assertEqual(tree[:2], mine[:2])
        self.assertEqual(sorted(tree[2]), sorted(mine[2]))


class TestRoundTrip(base.TestCase):

    def test_parse_format_is_identity_for_every_variant(self):
        for name, conf in variants():
            again = config.LibvirtConfigGuestVdpaInterface.from_xml(
                conf.to_xml())
            self.assertEqual(conf.values(), again.values(), name)
            self.assertEqual(conf, again, name)

    def test_values_are_typed(self):
        conf = config.LibvirtConfigGuestVdpaInterface.from_xml(
            full_config().to_xml())
        self.assertIs(True, conf.driver_packed)
        self.assertIs(False, conf.driver_page_per_vq)
        self.assertEqual(4, conf.vhost_queues)
        self.assertEqual(9000, conf.mtu)
        # Nova's own address class: Nova's device metadata code reads it.
        self.assertIsInstance(conf.device_addr,
                              vconfig.LibvirtConfigGuestDeviceAddressPCI)
        self.assertEqual('0000:00:05.0', conf.device_addr.format_address())
        self.assertEqual((0, 0, 5, 0), conf.values()['device_addr'])

    def test_parses_what_libvirt_reports(self):
        # As libvirt 9.0 dumps it back (extra elements are ignored).
        conf = config.LibvirtConfigGuestVdpaInterface.from_xml("""
            <interface type='vdpa'>
              <mac address='02:00:00:00:00:10'/>
              <source dev='/dev/vhost-vdpa-0'/>
              <model type='virtio'/>
              <driver rx_queue_size='512' page_per_vq='on'/>
              <link state='up'/>
              <alias name='net0'/>
              <address type='pci' domain='0x0000' bus='0x00' slot='0x02'
                       function='0x0'/>
            </interface>""")
        self.assertEqual(
            _with(mac_addr='02:00:00:00:00:10',
                  source_dev='/dev/vhost-vdpa-0', model='virtio',
                  vhost_rx_queue_size=512, driver_page_per_vq=True,
                  alias='net0', device_addr=config.pci_address(0, 0, 2, 0)),
            conf)

    def test_composes_into_nova_guest_config(self):
        guest = vconfig.LibvirtConfigGuest()
        guest.virt_type = 'qemu'
        guest.name = 'g'
        guest.memory = 131072
        guest.vcpus = 1
        guest.os_type = 'hvm'
        guest.add_device(full_config())
        dom = etree.fromstring(guest.to_xml())
        ifaces = dom.findall('./devices/interface')
        self.assertEqual(1, len(ifaces))
        self.assertEqual(xml_tree(full_config().format_dom()),
                         xml_tree(ifaces[0]))


class TestEquality(base.TestCase):

    def test_any_value_differs(self):
        full = full_config()
        for field in config.LibvirtConfigGuestVdpaInterface.FIELDS:
            other = full_config()
            setattr(other, field, None)
            self.assertNotEqual(full, other, field)

    def test_nova_identity_match_against_nova_config(self):
        # Nova finds the live interface to detach with
        # `LibvirtConfigGuestInterface.parse_dom(live) == cfg`.
        live = vconfig.LibvirtConfigGuestInterface()
        live.parse_str(full_config().to_xml())
        # assertEqual compares with `first == second`: both directions.
        self.assertEqual(live, full_config())
        self.assertEqual(full_config(), live)
        live.mac_addr = 'fa:16:3e:99:99:99'
        self.assertNotEqual(live, full_config())


class TestParseErrors(base.TestCase):

    def test_not_vdpa(self):
        for xml in ("<interface type='bridge'/>", '<disk/>', '<interface'):
            self.assertRaises(
                exception.InvalidInterfaceXml,
                config.LibvirtConfigGuestVdpaInterface.from_xml, xml)

    def test_malformed_values(self):
        for xml in ("<interface type='vdpa'><mtu size='big'/></interface>",
                    "<interface type='vdpa'><mtu/></interface>",
                    "<interface type='vdpa'><driver packed='yes'/>"
                    "</interface>",
                    "<interface type='vdpa'><driver queues='2.5'/>"
                    "</interface>",
                    "<interface type='vdpa'><address type='pci' "
                    "domain='0x0000' bus='0x00'/></interface>"):
            e = self.assertRaises(
                exception.InvalidInterfaceXml,
                config.LibvirtConfigGuestVdpaInterface.from_xml, xml)
            self.assertIn('Not a valid vdpa interface XML', str(e))

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

"""The vdpa netlink client against the fake kernel (real pyroute2 codec)."""

import errno
import struct

from nova_vdpa import exception
from nova_vdpa.kernel import model
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import validate
from tests.unit import base
from tests.unit import fake_kernel


class TestQueries(base.KernelTestCase):

    mgmtdevs = [fake_kernel.vdpasim_net(), fake_kernel.mlx5_vf()]

    def test_management_devices(self):
        sim, vf = self.client.list_management_devices()
        self.assertIsNone(sim.bus)
        self.assertEqual('vdpasim_net', sim.handle)
        self.assertEqual(['net'], sim.supported_classes)
        self.assertEqual(3, sim.max_supported_vqs)
        self.assertIn('MAC', sim.supported_feature_names)
        self.assertEqual('pci/0000:08:00.2', vf.handle)
        self.assertEqual(vf, self.client.get_management_device(
            'pci/0000:08:00.2'))
        self.assertEqual(sim,
                         self.client.get_management_device('vdpasim_net'))

    def test_bus_is_sent_only_when_the_mgmtdev_has_one(self):
        # The kernel matches a bus-less handle only against bus-less
        # management devices, and the other way round.
        self.assertRaises(exception.VdpaManagementDeviceNotFound,
                          self.client.get_management_device,
                          'pci/vdpasim_net')
        self.assertRaises(exception.VdpaManagementDeviceNotFound,
                          self.client.get_management_device,
                          '0000:08:00.2')

    def test_device_and_config(self):
        self.client.create_device('vd0', 'vdpasim_net',
                                  mac='02:00:00:00:00:0A', mtu=9000)
        dev = self.client.get_device('vd0')
        self.assertEqual(model.VdpaDevice(
            name='vd0', mgmtdev='vdpasim_net', virtio_id=1, vendor_id=0,
            max_vqs=3, max_vq_size=256, min_vq_size=1), dev)
        self.assertEqual('network', dev.type)
        self.assertEqual([dev], self.client.list_devices())
        cfg = self.client.get_config('vd0')
        self.assertEqual('02:00:00:00:00:0a', cfg.mac)
        self.assertEqual(9000, cfg.mtu)
        self.assertTrue(cfg.link_up)
        self.assertFalse(cfg.link_announce)
        self.assertIsNone(cfg.max_vq_pairs)
        self.assertIn('MTU', cfg.device_feature_names)
        self.assertEqual([cfg], self.client.list_configs())

    def test_config_after_vhost_binding_has_no_negotiated_features(self):
        self.client.create_device('vd0', 'vdpasim_net')
        self.assertIsNotNone(
            self.client.get_config('vd0').negotiated_features)
        self.sysfs.bind('vd0')
        self.assertIsNone(self.client.get_config('vd0').negotiated_features)
        self.assertEqual([], self.client.get_config(
            'vd0').negotiated_feature_names)

    def test_mlx5_like_max_vqp_and_vendor_stats(self):
        self.client.create_device('vf0', 'pci/0000:08:00.2', max_vq_pairs=4)
        self.assertEqual(4, self.client.get_config('vf0').max_vq_pairs)
        self.assertEqual('pci/0000:08:00.2',
                         self.client.get_device('vf0').mgmtdev)
        stats = self.client.get_vendor_stats('vf0', 0)
        self.assertEqual((('received_desc', 7), ('completed_desc', 6)),
                         stats.stats)
        self.assertEqual(4, stats.max_vq_pairs)

    def test_vendor_stats_need_negotiated_features(self):
        self.client.create_device('vd0', 'vdpasim_net')
        stats = self.client.get_vendor_stats('vd0', 0)
        self.assertEqual(['rx packets', 'rx bytes', 'rx errors',
                          'rx overruns', 'rx drops'],
                         [n for n, _ in stats.stats])
        self.assertEqual('tx packets',
                         self.client.get_vendor_stats('vd0', 1).stats[0][0])
        self.sysfs.bind('vd0')
        # On vhost_vdpa nothing negotiated yet: EAGAIN.
        e = self.assertRaises(exception.VdpaFeaturesNotNegotiated,
                              self.client.get_vendor_stats, 'vd0', 0)
        self.assertIn('errno 11', str(e))
        self.assertRaises(exception.VdpaFeaturesNotNegotiated,
                          self.client.get_traffic, 'vd0')

    def test_traffic_sums_the_named_counters_of_every_queue(self):
        self.client.create_device('vd0', 'vdpasim_net')
        t = self.client.get_traffic('vd0')
        # The fake counts 7, 6, 5, ... down each queue's list.
        self.assertEqual(
            model.DeviceTraffic('vd0', rx_packets=7, rx_bytes=6,
                                rx_errors=5, rx_overruns=4, rx_drops=3,
                                tx_packets=7, tx_bytes=6, tx_errors=5,
                                tx_drops=4), t)
        self.assertTrue(t.reported)

    def test_descriptor_counters_are_no_packet_counters(self):
        self.client.create_device('vf0', 'pci/0000:08:00.2')
        t = self.client.get_traffic('vf0')
        self.assertFalse(t.reported)
        self.assertIsNone(t.rx_packets)

    def test_queue_beyond_the_device_is_refused(self):
        self.client.create_device('vd0', 'vdpasim_net')
        self.assertRaises(exception.VdpaInvalidRequest,
                          self.client.get_vendor_stats, 'vd0', 3)


class TestErrors(base.KernelTestCase):

    mgmtdevs = [fake_kernel.vdpasim_net(), fake_kernel.mlx5_vf()]

    def test_duplicate_is_eexist(self):
        self.client.create_device('vd0', 'vdpasim_net')
        e = self.assertRaises(exception.VdpaDeviceExists,
                              self.client.create_device, 'vd0',
                              'vdpasim_net')
        self.assertIn('vd0', str(e))
        self.assertIn('vdpasim_net', str(e))

    def test_unknown_mgmtdev_is_enodev(self):
        e = self.assertRaises(exception.VdpaManagementDeviceNotFound,
                              self.client.create_device, 'vd0', 'nope')
        self.assertIn('nope', str(e))
        self.assertIn('vd0', str(e))

    def test_unknown_device(self):
        for call in (self.client.get_device, self.client.get_config,
                     self.client.delete_device):
            e = self.assertRaises(exception.VdpaDeviceNotFound, call, 'gone')
            self.assertIn('gone', str(e))

    def test_max_vqp_unsupported_on_vdpasim_net(self):
        e = self.assertRaises(exception.VdpaAttributeNotSupported,
                              self.client.create_device, 'vd0',
                              'vdpasim_net', max_vq_pairs=2)
        self.assertIn('VDPA_ATTR_DEV_NET_CFG_MAX_VQP', str(e))
        self.assertIn('vdpasim_net', str(e))
        self.assertIn('not supported', str(e))
        self.assertEqual([], self.client.list_devices())

    def test_attribute_feature_bits_checked_only_when_provisioned(self):
        # The fake's rule, past our own checks (raw requests), as
        # tests/functional/test_kernel_client.py sends them to the real
        # kernel: an MTU needs F_MTU only among given DEV_FEATURES.
        mtu_off = fake_kernel.vdpasim_net().supported_features & ~model.F_MTU

        def send(name, *extra):
            return self.client._request(
                netlink.VDPA_CMD_DEV_NEW,
                [('VDPA_ATTR_DEV_NAME', name),
                 ('VDPA_ATTR_MGMTDEV_DEV_NAME', 'vdpasim_net'),
                 ('VDPA_ATTR_DEV_NET_CFG_MTU', 1400)] + list(extra), False,
                dict(device=name, mgmtdev='vdpasim_net', attribute='raw'))
        e = self.assertRaises(exception.VdpaInvalidRequest, send, 'vd0',
                              ('VDPA_ATTR_DEV_FEATURES', mtu_off))
        self.assertIn('Missing features 0x8', str(e))
        self.assertRaises(exception.VdpaInvalidRequest, send, 'vd0',
                          ('VDPA_ATTR_DEV_FEATURES', 1 << 60))
        self.assertEqual([], self.client.list_devices())
        send('vd0', ('VDPA_ATTR_DEV_FEATURES', mtu_off | model.F_MTU))
        send('vd1')
        self.assertEqual(['vd0', 'vd1'],
                         sorted(d.name for d in self.client.list_devices()))

    def test_one_device_per_mlx5_vf(self):
        self.client.create_device('vf0', 'pci/0000:08:00.2')
        e = self.assertRaises(exception.VdpaNoSpace,
                              self.client.create_device, 'vf1',
                              'pci/0000:08:00.2')
        self.assertIn('pci/0000:08:00.2', str(e))

    def test_eperm_without_cap_net_admin(self):
        self.client.create_device('vd0', 'vdpasim_net')
        self.kernel.cap_net_admin = False
        self.assertRaises(exception.VdpaPermissionDenied,
                          self.client.create_device, 'vd1', 'vdpasim_net')
        self.assertRaises(exception.VdpaPermissionDenied,
                          self.client.delete_device, 'vd0')
        # Reading needs no capability.
        self.assertEqual(['vd0'],
                         [d.name for d in self.client.list_devices()])

    def test_family_missing(self):
        self.kernel.loaded = False
        e = self.assertRaises(exception.VdpaNotLoaded, self.kernel.client)
        self.assertIn('not loaded', str(e))
        self.assertIn("generic netlink family 'vdpa'", str(e))

    def test_client_rebinds_after_the_family_is_reloaded(self):
        client = self.kernel.client()
        client.create_device('vd0', 'vdpasim_net')
        # Reloading the modules gives the family a new id: a long-lived
        # client (nova-compute's) must follow it, not fail forever.
        self.kernel.family_id += 1
        self.assertEqual(['vd0'], [d.name for d in client.list_devices()])
        client.create_device('vd1', 'vdpasim_net')
        self.assertEqual(['vd0', 'vd1'],
                         sorted(d.name for d in client.list_devices()))

    def test_family_unloaded_after_bind(self):
        client = self.kernel.client()
        self.kernel.loaded = False
        e = self.assertRaises(exception.VdpaNotLoaded, client.list_devices)
        self.assertIn('not loaded', str(e))
        # A request about a device names it, also when the family is gone.
        e = self.assertRaises(exception.VdpaNotLoaded, client.get_device,
                              'vd7')
        self.assertIn('device vd7', str(e))
        self.assertRaises(exception.VdpaNotLoaded, client.list_devices)
        # Loaded again (with a new family id): the same client works.
        self.kernel.loaded = True
        self.kernel.family_id += 1
        self.assertEqual([], client.list_devices())

    def test_kernel_range_error_carries_extack(self):
        # Our own checks stop MTU < 68 first; talk to the kernel directly
        # to see how its policy error is mapped.
        e = self.assertRaises(exception.VdpaInvalidRequest,
                              netlink._raise_for_errno, errno.ERANGE,
                              netlink.VDPA_CMD_DEV_NEW,
                              dict(device='d', mgmtdev='m', attribute='mtu'),
                              'integer out of range')
        self.assertIn('integer out of range', str(e))
        self.assertIn('errno 34', str(e))

    def test_unmapped_errno_is_still_typed(self):
        self.assertRaises(exception.VdpaKernelError,
                          netlink._raise_for_errno, errno.EIO,
                          netlink.VDPA_CMD_DEV_CONFIG_GET,
                          dict(device='d', mgmtdev='-', attribute='-'),
                          None)

    def test_features_must_cover_given_config(self):
        self.assertRaises(exception.VdpaInvalidArgument,
                          self.client.create_device, 'vd0', 'vdpasim_net',
                          mac='02:00:00:00:00:01',
                          device_features=model.F_MTU)
        self.client.create_device('vd0', 'vdpasim_net',
                                  mac='02:00:00:00:00:01',
                                  device_features=model.F_MAC | 1 << 32)
        self.assertEqual(model.F_MAC | 1 << 32,
                         self.client.get_config('vd0').device_features)


class TestValidation(base.KernelTestCase):

    def _refused(self, **kw):
        args = dict(name='vd0', mgmtdev='vdpasim_net')
        args.update(kw)
        e = self.assertRaises(exception.VdpaInvalidArgument,
                              self.client.create_device, **args)
        self.assertEqual({}, self.kernel.devices)
        return e

    def test_names_cannot_escape_sysfs(self):
        for name in ('', '..', '.', 'a/b', '../x', 'a b', 'x' * 64,
                     '-lead', 'a\0b', 'a.b', 'abc\n', None, 7):
            self._refused(name=name)
        self.assertEqual({}, self.kernel.devices)

    def test_bad_values(self):
        self._refused(mtu=67)
        self._refused(mtu=65536)
        self._refused(mtu=True)
        self._refused(max_vq_pairs=0)
        self._refused(max_vq_pairs=0x8001)
        self._refused(mac='02:00:00:00:00')
        self._refused(mac='01:00:5e:00:00:01')
        self._refused(mac='00:00:00:00:00:00')
        self._refused(mac='02-00-00-00-00-01')
        self._refused(mac='02:00:00:00:00:01\n')
        self._refused(mgmtdev='vdpasim_net\n')
        self._refused(mgmtdev='pci/../x')
        self._refused(mgmtdev='PCI BUS/x')
        self._refused(device_features=-1)
        self.assertEqual({}, self.kernel.devices)

    def test_edges_accepted(self):
        self.client.create_device('a' * 63, 'vdpasim_net', mtu=68)
        self.client.create_device('b', 'vdpasim_net', mtu=65535)
        self.assertEqual(2, len(self.client.list_devices()))


class TestAnchoredChecks(base.TestCase):
    """Every pattern check matches the whole string: no trailing junk."""

    def test_trailing_newline_or_junk_never_passes(self):
        checks = (
            (validate.device_name, 'vd0'),
            (validate.mgmtdev_handle, 'vdpasim_net'),
            (validate.mgmtdev_handle, 'pci/0000:08:00.2'),
            (validate.mac, '02:00:00:00:00:01'),
            (validate.pci_address, '0000:08:00.2'),
        )
        for check, good in checks:
            check(good)
            for bad in (good + '\n', good + ' ', good + '\nx', good + '\0',
                        '\n' + good):
                self.assertRaises(exception.VdpaInvalidArgument, check, bad)
        self.assertRaises(exception.VdpaInvalidArgument,
                          validate.mgmtdev_handle, 'pci\n/0000:08:00.2')

    def test_pci_address_is_the_sysfs_spelling(self):
        for good in ('0000:08:00.2', '0000:af:1f.7', '10000:00:00.0'):
            validate.pci_address(good)
        for bad in ('0000:08:00.8', '0000:08:20.0', '0000:AF:00.0', '08:00.2',
                    '0000:08:00', '../x', '.', None):
            self.assertRaises(exception.VdpaInvalidArgument,
                              validate.pci_address, bad)


class TestDevicesOtherToolsMade(base.KernelTestCase):
    """iproute2 creates names our creation rule forbids: we manage them."""

    NAMES = ('a.b', 'x:y', 'p@q', 'n' * 100, 'sp ace', 'nl\n', '-lead')

    def test_creation_keeps_the_strict_rule(self):
        for name in self.NAMES:
            self.assertRaises(exception.VdpaInvalidArgument,
                              self.client.create_device, name, 'vdpasim_net')
        self.assertEqual([], self.client.list_devices())

    def test_get_config_and_delete_any_reported_name(self):
        for name in self.NAMES:
            self.iproute2_add(name)
        listed = sorted(d.name for d in self.client.list_devices())
        self.assertEqual(sorted(self.NAMES), listed)
        for name in listed:
            self.assertEqual(name, self.client.get_device(name).name)
            self.assertEqual(name, self.client.get_config(name).name)
            self.client.delete_device(name)
        self.assertEqual([], self.client.list_devices())

    def test_what_cannot_be_a_sysfs_component_is_refused(self):
        for name in ('', '.', '..', 'a/b', '../x', 'a\0b', None, 7):
            for call in (self.client.get_device, self.client.get_config,
                         self.client.delete_device):
                e = self.assertRaises(exception.VdpaInvalidArgument, call,
                                      name)
                self.assertIn(repr(name), str(e))


class TestFeatureNames(base.TestCase):

    def test_names_like_iproute2(self):
        bits = (1 << 3 | 1 << 5 | 1 << 16 | 1 << 17 | 1 << 23 | 1 << 32
                | 1 << 33 | 1 << 40 | 1 << 50)
        self.assertEqual(['MTU', 'MAC', 'STATUS', 'CTRL_VQ', 'CTRL_MAC_ADDR',
                          'VERSION_1', 'ACCESS_PLATFORM', 40, 50],
                         model.feature_names(bits))
        self.assertEqual([], model.feature_names(None))
        self.assertEqual([3, 'VERSION_1'],
                         model.feature_names(1 << 3 | 1 << 32, 2))

    def test_attribute_21_is_device_features_on_61_for_net_only(self):
        base = {'VDPA_ATTR_DEV_NAME': 'd', 'VDPA_ATTR_DEV_ID': 1,
                'VDPA_ATTR_21': model.F_MAC}
        self.assertEqual(model.F_MAC, model.DeviceConfig.from_attrs(
            base).device_features)
        base['VDPA_ATTR_DEV_ID'] = 2
        self.assertIsNone(model.DeviceConfig.from_attrs(
            base).device_features)

    def test_link_status_is_u16(self):
        m = netlink.vdpamsg()
        m['cmd'] = 6
        m['attrs'] = [('VDPA_ATTR_DEV_NET_STATUS', 0x0103)]
        m['header']['type'] = 0x1c
        m.encode()
        back = netlink.vdpamsg(m.data)
        back.decode()
        self.assertEqual(0x0103, back.get_attr('VDPA_ATTR_DEV_NET_STATUS'))

    def test_strings_are_nul_terminated(self):
        m = netlink.vdpamsg()
        m['cmd'] = 5
        m['attrs'] = [('VDPA_ATTR_DEV_NAME', 'vd0')]
        m['header']['type'] = 0x1c
        m.encode()
        self.assertIn(b'vd0\x00', bytes(m.data))


def _wire(cmd, attrs, msg_type=0x1c, seq=0, flags=0):
    m = netlink.vdpamsg()
    m['cmd'] = cmd
    m['version'] = netlink.GENL_VERSION
    m['attrs'] = attrs
    m['header']['type'] = msg_type
    m['header']['sequence_number'] = seq
    m['header']['flags'] = flags
    m.encode()
    return bytes(m.data)


class TestDecodeReply(base.TestCase):
    """decode_reply reads what pyroute2's own decoder reads."""

    # Every attribute format of the family's map, with edge values.
    attrs = [
        ('VDPA_ATTR_MGMTDEV_BUS_NAME', 'pci'),
        ('VDPA_ATTR_MGMTDEV_DEV_NAME', '0000:08:00.2'),
        ('VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES', 1 << 1),
        ('VDPA_ATTR_DEV_NAME', 'nvdpa-\u00e9t\u00e9'),
        ('VDPA_ATTR_DEV_ID', 1),
        ('VDPA_ATTR_DEV_VENDOR_ID', 0x15b3),
        ('VDPA_ATTR_DEV_MAX_VQS', 2 ** 32 - 1),
        ('VDPA_ATTR_DEV_MAX_VQ_SIZE', 256),
        ('VDPA_ATTR_DEV_MIN_VQ_SIZE', 1),
        ('VDPA_ATTR_DEV_NET_CFG_MACADDR', 'fa:16:3e:0a:0b:0c'),
        ('VDPA_ATTR_DEV_NET_STATUS', 0x0103),
        ('VDPA_ATTR_DEV_NET_CFG_MAX_VQP', 8),
        ('VDPA_ATTR_DEV_NET_CFG_MTU', 9000),
        ('VDPA_ATTR_DEV_NEGOTIATED_FEATURES', 2 ** 64 - 1),
        ('VDPA_ATTR_DEV_VENDOR_ATTR_NAME', 'received_desc'),
        ('VDPA_ATTR_DEV_VENDOR_ATTR_VALUE', 7),
        ('VDPA_ATTR_DEV_VENDOR_ATTR_NAME', 'completed_desc'),
        ('VDPA_ATTR_DEV_VENDOR_ATTR_VALUE', 5),
        ('VDPA_ATTR_21', 1 << 5),
    ]

    def test_same_as_pyroute2(self):
        # A copy: pyroute2's encoder replaces the list's items.
        data = _wire(netlink.VDPA_CMD_DEV_CONFIG_GET, list(self.attrs))
        ours = netlink.decode_reply(data)
        theirs = netlink.vdpamsg(data)
        theirs.decode()
        self.assertEqual(netlink.VDPA_CMD_DEV_CONFIG_GET, ours['cmd'])
        self.assertEqual([(a[0], a[1]) for a in theirs['attrs']],
                         ours['attrs'])
        # pyroute2 pads u64 attributes with PAD (0) attributes.
        self.assertEqual(self.attrs, [a for a in ours['attrs']
                                      if a[0] != 'VDPA_ATTR_PAD'])

    def test_attrs_by_name_as_the_pairs_give_them(self):
        data = _wire(netlink.VDPA_CMD_DEV_VSTATS_GET, list(self.attrs))
        self.assertEqual(dict(netlink.decode_reply(data)['attrs']),
                         netlink.decode_attrs(data))
        # A repeated attribute keeps its last value, as dict() of the pairs.
        self.assertEqual(5, netlink.decode_attrs(data)[
            'VDPA_ATTR_DEV_VENDOR_ATTR_VALUE'])

    def test_short_values_and_unterminated_strings(self):
        # An integer shorter than its format reads as None; a string
        # without its NUL ends with the attribute.
        body = struct.pack('=HHH', 6, 7, 3) + b'\0\0'  # MAX_VQS u32, 2 bytes
        body += struct.pack('=HH', 7, 4) + b'abc' + b'\0'  # DEV_NAME, no NUL
        body += struct.pack('=HH', 4, 10)  # MACADDR, empty
        data = struct.pack('=IHHIIBBH', 20 + len(body), 0x1c, 0, 0, 0,
                           netlink.VDPA_CMD_DEV_NEW, 1, 0) + body
        self.assertEqual({'VDPA_ATTR_DEV_MAX_VQS': None,
                          'VDPA_ATTR_DEV_NAME': 'abc',
                          'VDPA_ATTR_DEV_NET_CFG_MACADDR': ''},
                         netlink.decode_attrs(data))

    def test_unknown_attribute_skipped_and_message_bounds_kept(self):
        first = bytearray(_wire(netlink.VDPA_CMD_DEV_GET, [
            ('VDPA_ATTR_DEV_NAME', 'a'), ('VDPA_ATTR_DEV_ID', 1)]))
        # A newer kernel's attribute 40 (u32) appended to the message.
        first += (8).to_bytes(2, 'little') + (40).to_bytes(2, 'little')
        first += (7).to_bytes(4, 'little')
        first[0:4] = len(first).to_bytes(4, 'little')
        second = _wire(netlink.VDPA_CMD_DEV_GET, [('VDPA_ATTR_DEV_NAME',
                                                   'b')])
        buf = bytes(first) + second
        self.assertEqual(
            [('VDPA_ATTR_DEV_NAME', 'a'), ('VDPA_ATTR_DEV_ID', 1)],
            netlink.decode_reply(buf)['attrs'])
        self.assertEqual([('VDPA_ATTR_DEV_NAME', 'b')], netlink.decode_reply(
            buf, len(first))['attrs'])


class _ScriptedNetlink:
    """Stands for the kernel's side of a netlink socket: canned buffers."""

    def __init__(self, buffers):
        self.buffers = list(buffers)
        self.sent = []

    def send(self, data):
        self.sent.append(bytes(data))

    def recvmsg(self, size):
        return self.buffers.pop(0), [], 0, None

    def close(self):
        pass


def _done(seq, code=0):
    return struct.pack('=IHHIIi', 20, netlink.NLMSG_DONE, 2, seq, 0, code)


def _ack(seq, code=0, extack=None):
    # The error code, then the header of the request it answers.
    body = struct.pack('=i', code)
    body += struct.pack('=IHHII', 16, 0x1c, 5, seq, 0)
    flags = 0
    if extack:
        text = extack.encode() + b'\0'
        nla = struct.pack('=HH', 4 + len(text), 1) + text
        nla += b'\0' * (-len(nla) % 4)
        body += nla
        flags = 0x200  # NLM_F_ACK_TLVS
    return struct.pack('=IHHII', 16 + len(body), netlink.NLMSG_ERROR,
                       flags, seq, 0) + body


class TestVdpaSocketReplies(base.TestCase):
    """How VdpaSocket splits, matches and ends the kernel's answers."""

    def socket(self, *buffers):
        sock = netlink.VdpaSocket.__new__(netlink.VdpaSocket)
        sock._sock = _ScriptedNetlink(buffers)
        sock._seq = 0
        sock.prid = 0x1c
        sock._marshal = netlink.Marshal()
        return sock

    def request(self, sock, flags):
        m = netlink.vdpamsg()
        m['cmd'] = netlink.VDPA_CMD_DEV_GET
        m['version'] = 1
        m['attrs'] = []
        return sock.nlm_request(m, 0x1c, flags)

    def dev(self, name, seq, flags=2):
        return _wire(netlink.VDPA_CMD_DEV_GET, [('VDPA_ATTR_DEV_NAME', name)],
                     seq=seq, flags=flags)

    def test_dump_over_several_reads_skipping_late_replies(self):
        late = self.dev('old', seq=7)
        sock = self.socket(late + self.dev('a', 1), self.dev('b', 1)
                           + _done(1))
        replies = self.request(sock, netlink.NLM_F_REQUEST |
                               netlink.NLM_F_DUMP)
        self.assertEqual([[('VDPA_ATTR_DEV_NAME', 'a')],
                          [('VDPA_ATTR_DEV_NAME', 'b')]],
                         [netlink.decode_reply(*r)['attrs'] for r in replies])

    def test_dump_that_fails_after_its_first_part_raises(self):
        sock = self.socket(self.dev('a', 1) + _done(1, -errno.EMSGSIZE))
        e = self.assertRaises(
            netlink.NetlinkError, self.request, sock,
            netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP)
        self.assertEqual(errno.EMSGSIZE, e.code)

    def test_get_ends_at_the_ack(self):
        sock = self.socket(self.dev('a', 1, flags=0) + _ack(1))
        replies = self.request(sock, netlink.NLM_F_REQUEST |
                               netlink.NLM_F_ACK)
        self.assertEqual([[('VDPA_ATTR_DEV_NAME', 'a')]],
                         [netlink.decode_reply(*r)['attrs'] for r in replies])

    def test_error_carries_the_extended_ack(self):
        sock = self.socket(_ack(1, -errno.EINVAL, 'MTU must be >= 68'))
        e = self.assertRaises(netlink.NetlinkError, self.request, sock,
                              netlink.NLM_F_REQUEST | netlink.NLM_F_ACK)
        self.assertEqual(errno.EINVAL, e.code)
        self.assertEqual('MTU must be >= 68', e.args[1])

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

"""VF -> PF -> uplink -> representor through a sysfs tree in a folder.

The tree has what the kernel shows (a symlinked ``physfn`` and
``virtfnN``, ``/sys/bus/pci/devices/<PF>/net/<uplink>``, ``phys_switch_id``
and ``phys_port_name`` only on switchdev ports); the representor part is
checked on real netdevsim representors in
tests/functional/test_network_offload.py. ``hw-tc-offload`` is read
through a fake of pyroute2's ethtool ioctl that answers ENODEV for a
missing netdev, as the kernel does.
"""

import os

import fixtures
import testtools
from vif_plug_ovs import linux_net

from nova_vdpa import exception
from nova_vdpa.kernel import devlink
from nova_vdpa.kernel import netdev
from nova_vdpa.network import checks

PF = '0000:08:00.0'
PF1 = '0000:08:00.1'
SWITCH = '8a6e0e0003fe0f00'


class SysfsTree:
    """Build a sysfs tree with PCI VFs and netdevs under ``root``."""

    def __init__(self, root):
        self.root = root
        self.pci = os.path.join(root, 'bus', 'pci', 'devices')
        self.net = os.path.join(root, 'class', 'net')
        os.makedirs(self.pci)
        os.makedirs(self.net)

    def pf(self, address, uplink=None, switch=None, vfs=()):
        os.makedirs(os.path.join(self.pci, address, 'net'))
        for i, vf in enumerate(vfs):
            os.makedirs(os.path.join(self.pci, vf))
            os.symlink('../' + address, os.path.join(self.pci, vf, 'physfn'))
            os.symlink('../' + vf, os.path.join(self.pci, address,
                                                'virtfn%d' % i))
        if uplink:
            os.makedirs(os.path.join(self.pci, address, 'net', uplink))
            self.netdev(uplink, switch, 'p0' if switch else None)

    def netdev(self, name, switch=None, port_name=None):
        d = os.path.join(self.net, name)
        os.makedirs(d)
        # Without a switch port the kernel answers EOPNOTSUPP on read; a
        # missing file is read the same way by the code under test.
        if switch:
            with open(os.path.join(d, 'phys_switch_id'), 'w') as f:
                f.write(switch + '\n')
        if port_name:
            with open(os.path.join(d, 'phys_port_name'), 'w') as f:
                f.write(port_name + '\n')


class FakeDevlink:
    def __init__(self, modes):
        self.modes = modes

    def eswitch(self, handle):
        if handle not in self.modes:
            raise exception.DevlinkDeviceNotFound(handle=handle,
                                                  reason='ENODEV')
        return devlink.EswitchState(handle, self.modes[handle])


class NetdevTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tree = SysfsTree(self.useFixture(fixtures.TempDir()).path)
        self.tree.pf(PF, 'enp8s0f0np0', SWITCH,
                     vfs=['0000:08:00.2', '0000:08:00.3', '0000:08:00.4'])
        self.tree.netdev('enp8s0f0npf0vf0', SWITCH, 'pf0vf0')
        self.tree.netdev('enp8s0f0npf0vf1', SWITCH, 'pf0vf1')
        # Same switch, other PF (function 1): must not match PF 0's VF 0.
        self.tree.netdev('enp8s0f1npf1vf0', SWITCH, 'pf1vf0')
        self.tree.netdev('eth0')
        self.netdevs = netdev.Netdevs(self.tree.root)
        self.devlink = FakeDevlink({'pci/' + PF: 1})


class TestPortNames(testtools.TestCase):

    def test_same_reading_as_os_vif(self):
        for name in ('pf0vf3', 'pf1vf12', 'vf3', 'VF3', '3', 'p0', 'pf0',
                     'pf0sf4', 'c1pf0vf2'):
            pf, vf = netdev.parse_port_name(name)
            osvif_vf = linux_net._parse_vf_number(name)
            self.assertEqual(osvif_vf, None if vf is None else str(vf),
                             name)
            if vf is not None and not name.isdigit():
                osvif_pf = linux_net._parse_pf_number(name)
                self.assertEqual(osvif_pf, None if pf is None else str(pf),
                                 name)


class TestRepresentors(NetdevTestCase):

    def test_locate_vf(self):
        port = self.netdevs.locate_vf('0000:08:00.3')
        self.assertEqual(netdev.VfPort('0000:08:00.3', 'pci', PF, 1, 0,
                                       'enp8s0f0np0'), port)
        self.assertEqual('pci/' + PF, port.devlink_handle)

    def test_exactly_one_representor(self):
        port = self.netdevs.locate_vf('0000:08:00.2')
        self.assertEqual(['enp8s0f0npf0vf0'], self.netdevs.representors(port))
        result = checks.check_representor(port, self.netdevs)
        self.assertTrue(result.ok)
        self.assertEqual('enp8s0f0npf0vf0', result.detail)
        self.assertEqual('enp8s0f0npf0vf0', checks.check_vf_ready(
            '0000:08:00.2', self.netdevs, self.devlink))

    def test_missing_representor(self):
        port = self.netdevs.locate_vf('0000:08:00.4')
        result = checks.check_representor(port, self.netdevs)
        self.assertEqual(checks.Status.FAILURE, result.status)
        self.assertIn('0000:08:00.4', result.message)
        self.assertIn('no representor', result.message)
        e = self.assertRaises(exception.OffloadNotReady,
                              checks.check_vf_ready, '0000:08:00.4',
                              self.netdevs, self.devlink)
        self.assertIn('VF 0000:08:00.4 cannot carry a vdpa port', e.message)

    def test_two_representors(self):
        self.tree.netdev('vf1-renamed', SWITCH, 'vf1')
        port = self.netdevs.locate_vf('0000:08:00.3')
        result = checks.check_representor(port, self.netdevs)
        self.assertEqual(checks.Status.FAILURE, result.status)
        self.assertIn('2 representors', result.message)
        self.assertIn('vf1-renamed', result.message)

    def test_other_switch_ignored(self):
        self.tree.netdev('other0', 'ffff', 'pf0vf2')
        port = self.netdevs.locate_vf('0000:08:00.4')
        self.assertEqual([], self.netdevs.representors(port))

    def test_not_a_vf(self):
        e = self.assertRaises(exception.VfNotFound, self.netdevs.locate_vf,
                              PF)
        self.assertIn('not an SR-IOV VF', e.message)
        result, port = checks.locate(PF, self.netdevs)
        self.assertIsNone(port)
        self.assertEqual(checks.Status.FAILURE, result.status)

    def test_pf_in_legacy_mode_has_no_uplink(self):
        # Legacy mode: the PF's netdev has no phys_switch_id.
        self.tree.pf(PF1, 'enp8s0f1', None, vfs=['0000:08:01.0'])
        e = self.assertRaises(exception.VfNotFound, self.netdevs.locate_vf,
                              '0000:08:01.0')
        self.assertIn('enp8s0f1', e.message)
        self.assertIn('switchdev', e.message)
        e = self.assertRaises(exception.OffloadNotReady,
                              checks.check_vf_ready, '0000:08:01.0',
                              self.netdevs, self.devlink)
        self.assertIn('devlink dev eswitch set', e.message)

    def test_legacy_eswitch_refused_before_allocation(self):
        self.devlink.modes['pci/' + PF] = devlink.ESWITCH_MODE_LEGACY
        e = self.assertRaises(exception.OffloadNotReady,
                              checks.check_vf_ready, '0000:08:00.2',
                              self.netdevs, self.devlink)
        self.assertIn('0000:08:00.2', e.message)
        self.assertIn('eswitch mode legacy', e.message)

    def test_eswitch_unreadable_without_privilege_is_a_warning(self):
        class Denied:
            def eswitch(self, handle):
                raise exception.DevlinkPermissionDenied(handle=handle,
                                                        reason='EPERM')

        port = self.netdevs.locate_vf('0000:08:00.2')
        result = checks.check_eswitch(port, Denied())
        self.assertEqual(checks.Status.WARNING, result.status)
        # A representor exists only in switchdev mode: still ready.
        self.assertEqual('enp8s0f0npf0vf0', checks.check_vf_ready(
            '0000:08:00.2', self.netdevs, Denied()))

    def test_unreadable_attribute_is_a_typed_error(self):
        # An error other than "no such attribute / not a switch port"
        # (here EISDIR) is not hidden as "no switch id".
        os.makedirs(os.path.join(self.tree.net, 'eth0', 'phys_switch_id'))
        e = self.assertRaises(exception.NetdevError, self.netdevs.switch_id,
                              'eth0')
        self.assertIn('phys_switch_id', e.message)


class FakeFeatures:
    """What pyroute2's EthtoolFeaturesList offers, for one netdev."""

    def __init__(self, features):
        self.features = features  # name -> (active, changeable)

    def __contains__(self, name):
        return name in self.features

    def __getitem__(self, name):
        return self.features[name][0]

    def is_available(self, name):
        return self.features[name][1]


class FakeIoctlEthtool:
    netdevs = {}

    def __init__(self):
        self.ifname = None

    def change_ifname(self, ifname):
        self.ifname = ifname

    def get_features(self):
        from pyroute2.ethtool import ioctl
        if self.ifname not in self.netdevs:
            # The kernel answers ENODEV; pyroute2 turns it into this.
            raise ioctl.NoSuchDevice(self.ifname)
        return FakeFeatures(self.netdevs[self.ifname])

    def close(self):
        pass


class TestTcOffload(NetdevTestCase):

    def setUp(self):
        super().setUp()
        FakeIoctlEthtool.netdevs = {
            'on0': {netdev.HW_TC_OFFLOAD: (True, True)},
            'off0': {netdev.HW_TC_OFFLOAD: (False, True)},
            'fixed0': {netdev.HW_TC_OFFLOAD: (False, False)},
            'old0': {},
        }
        self.useFixture(fixtures.MockPatch(
            'pyroute2.ethtool.ioctl.IoctlEthtool', FakeIoctlEthtool))

    def test_states(self):
        self.assertTrue(self.netdevs.hw_tc_offload('on0'))
        self.assertFalse(self.netdevs.hw_tc_offload('off0'))
        self.assertIsNone(self.netdevs.hw_tc_offload('fixed0'))
        self.assertIsNone(self.netdevs.hw_tc_offload('old0'))
        self.assertRaises(exception.NetdevError, self.netdevs.hw_tc_offload,
                          'gone0')

    def test_check_messages(self):
        self.assertTrue(checks.check_tc_offload('on0', self.netdevs,
                                                'uplink').ok)
        off = checks.check_tc_offload('off0', self.netdevs, 'representor')
        self.assertEqual(checks.Status.WARNING, off.status)
        self.assertIn('ethtool -K off0 hw-tc-offload on', off.message)
        fixed = checks.check_tc_offload('fixed0', self.netdevs, 'uplink')
        self.assertIn('unsupported', fixed.message)
        gone = checks.check_tc_offload('gone0', self.netdevs, 'uplink')
        self.assertEqual(checks.Status.FAILURE, gone.status)
        self.assertIn('gone0', gone.message)

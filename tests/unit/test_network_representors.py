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
from vif_plug_ovs import linux_net

from nova_vdpa import exception
from nova_vdpa.kernel import devlink
from nova_vdpa.kernel import netdev
from nova_vdpa.network import checks
from tests.unit import base
from tests.unit.fake_network import FakeIoctlEthtool
from tests.unit.fake_network import NetdevTestCase
from tests.unit.fake_network import PF
from tests.unit.fake_network import PF1
from tests.unit.fake_network import SWITCH


class TestPortNames(base.TestCase):

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

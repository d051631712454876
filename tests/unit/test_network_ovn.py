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

"""ML2/OVN detection, chassis checks and the OVN port view, on fakes.

The fake chassis follows what OVN 23.03 does (seen in the bed,
tests/functional/test_network_ovn.py, which checks each rule against the
real daemons): ovn-controller answers ``connection-status`` on a real
unixctl socket (the ``ovs`` library's own server, so the protocol is the
real one) with ``connected`` only while ``ovn-remote`` is set and the
southbound server is up; it writes ``ovn-installed`` on an Interface only
when its ``iface-id`` names a logical port bound here, and keeps it when
the connection drops; its Geneve ports carry ``ovn-chassis-id``
``<chassis>@<ip>`` on the Port.
"""

import os
import threading
from unittest import mock

import fixtures

from nova_vdpa.network import checks
from nova_vdpa.network import mechanism
from nova_vdpa.network import ovn
from nova_vdpa.network import ovsdb
from tests.unit import base
from tests.unit.fake_network import FakeIoctlEthtool
from tests.unit.fake_network import FakeOvsdb
from tests.unit.fake_network import MAC
from tests.unit.fake_network import NetdevTestCase
from tests.unit.fake_network import PORT
from tests.unit.fake_network import REP

UPLINK = 'enp8s0f0np0'
SB = 'tcp:192.0.2.1:6642'


class FakeChassis(FakeOvsdb):
    """An OVSDB whose Open_vSwitch row is an OVN chassis's."""

    def __init__(self):
        super().__init__()
        del self.bridges['br-tun']   # OVN has none
        self.ids = {'system-id': 'chassis-1', 'ovn-remote': SB,
                    'ovn-encap-type': 'geneve', 'ovn-encap-ip': '192.0.2.10'}
        self.bound = set()          # logical ports bound to this chassis
        self.sb_up = True

    @property
    def connected(self):
        return bool(self.ids.get('ovn-remote')) and self.sb_up

    def controller_loop(self):
        """One pass of ovn-controller over the Interface rows."""
        for name, row in list(self.rows.items()):
            if (self.connected and row.bridge == 'br-int'
                    and row.external_ids.get('iface-id') in self.bound
                    and row.ofport and row.ofport > 0):
                ids = dict(row.external_ids, **{'ovn-installed': 'true'})
                self.rows[name] = ovsdb.InterfaceRow(
                    **dict(row.__dict__, external_ids=ids))

    def tunnel(self, chassis, ip):
        name = 'ovn-%s-0' % chassis[:5]
        self.rows[name] = ovsdb.InterfaceRow(
            name=name, type='geneve', ofport=7, external_ids={},
            options={'remote_ip': ip, 'key': 'flow', 'csum': 'true'},
            error=None, bridge='br-int', tag=None,
            port_external_ids={'ovn-chassis-id': '%s@%s' % (chassis, ip)})


_ANSWER_FOR = [None]


def _connection_status(conn, argv, aux):
    conn.reply('connected\n' if _ANSWER_FOR[0].connected
               else 'not connected\n')


class FakeController:
    """ovn-controller's unixctl socket, served by the ovs library."""

    def __init__(self, test, chassis):
        import ovs.poller
        import ovs.unixctl
        import ovs.unixctl.server

        self.rundir = test.useFixture(fixtures.TempDir()).path
        pid = 4242
        with open(os.path.join(self.rundir, 'ovn-controller.pid'), 'w') as f:
            f.write('%d\n' % pid)
        path = os.path.join(self.rundir, 'ovn-controller.%d.ctl' % pid)

        # The ovs library keeps one command table per process and keeps
        # the first registration of a name: register once, answer for
        # the chassis of the test that runs now.
        _ANSWER_FOR[0] = chassis
        ovs.unixctl.command_register('connection-status', '', 0, 0,
                                     _connection_status, None)
        error, self.server = ovs.unixctl.server.UnixctlServer.create(path)
        assert not error, os.strerror(error)
        self.stop = threading.Event()

        def serve():
            while not self.stop.is_set():
                self.server.run()
                poller = ovs.poller.Poller()
                self.server.wait(poller)
                poller.timer_wait(50)
                poller.block()
            self.server.close()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        test.addCleanup(self.close)

    def close(self):
        self.stop.set()
        self.thread.join(5)


class Addresses:
    """Netdevs' address dump, over the fake sysfs's netdevs."""

    def __init__(self, test, netdevs, held):
        def addresses():
            # The kernel lists addresses of existing netdevs only.
            return [(n, a) for n, a in held if netdevs.exists(n)]
        test.useFixture(fixtures.MockPatchObject(netdevs, 'addresses',
                                                 addresses))


class TestDetect(base.TestCase):

    def test_ml2_ovs_without_ovn_keys(self):
        ovs = FakeOvsdb()
        ovs.ids = {'system-id': 'x', 'hostname': 'h'}  # os-vif/others
        found = mechanism.detect(ovs)
        self.assertIs(mechanism.Mechanism.OVS, found.mechanism)
        self.assertEqual('br-int', found.bridge)
        self.assertFalse(found.is_ovn)

    def test_ovn_by_remote_or_encap(self):
        ovs = FakeChassis()
        found = mechanism.detect(ovs)
        self.assertIs(mechanism.Mechanism.OVN, found.mechanism)
        self.assertIn('ovn-remote=' + SB, found.evidence)
        # A chassis whose remote is missing is a broken OVN chassis.
        del ovs.ids['ovn-remote']
        self.assertTrue(mechanism.detect(ovs).is_ovn)

    def test_ovn_bridge_named_by_the_chassis(self):
        ovs = FakeChassis()
        ovs.ids['ovn-bridge'] = 'br-ovn'
        self.assertEqual('br-ovn', mechanism.detect(ovs, 'br-int').bridge)


class TestChassisChecks(NetdevTestCase):

    def setUp(self):
        super().setUp()
        self.ovs = FakeChassis()
        self.controller = FakeController(self, self.ovs)
        self.useFixture(fixtures.MockPatch(
            'pyroute2.ethtool.ioctl.IoctlEthtool', FakeIoctlEthtool))
        FakeIoctlEthtool.netdevs = {
            name: {'hw-tc-offload': (True, True)}
            for name in (UPLINK, 'enp8s0f0npf0vf0', 'enp8s0f0npf0vf1')}
        self.tree.netdev('eth1')
        self.tree.netdev('br-ex')
        # The uplink of another switchdev NIC, not the VFs'.
        self.tree.netdev('enp9s0np0', 'c0ffee', 'p0')
        Addresses(self, self.netdevs, [
            (UPLINK, '192.0.2.10'), ('eth1', '198.51.100.9'),
            ('enp9s0np0', '192.0.2.77'),
            ('br-ex', '203.0.113.4'), ('lo', '127.0.0.1')])

    def detected(self):
        return mechanism.detect(self.ovs)

    def test_chassis(self):
        self.assertTrue(ovn.check_chassis(self.detected()).ok)
        del self.ovs.ids['system-id']
        del self.ovs.ids['ovn-remote']
        r = ovn.check_chassis(self.detected())
        self.assertEqual(checks.Status.FAILURE, r.status)
        self.assertIn('external_ids:system-id and ovn-remote unset',
                      r.message)

    def test_controller_connected_then_not(self):
        r = ovn.check_controller(self.controller.rundir, SB)
        self.assertTrue(r.ok, r.message)
        self.ovs.sb_up = False
        r = ovn.check_controller(self.controller.rundir, SB)
        self.assertEqual(checks.Status.FAILURE, r.status)
        self.assertIn("'not connected'", r.message)
        self.assertIn(SB, r.message)

    def test_controller_not_running(self):
        empty = self.useFixture(fixtures.TempDir()).path
        r = ovn.check_controller(empty)
        self.assertEqual(checks.Status.FAILURE, r.status)
        self.assertIn('ovn-controller is not running here', r.message)
        # A pid file left behind by a dead daemon: no listener.
        with open(os.path.join(empty, 'ovn-controller.pid'), 'w') as f:
            f.write('99999\n')
        r = ovn.check_controller(empty)
        self.assertEqual(checks.Status.FAILURE, r.status)
        self.assertIn('start ovn-controller', r.message)

    def test_rundir_from_environment(self):
        self.useFixture(fixtures.EnvironmentVariable(
            'OVN_RUNDIR', self.controller.rundir))
        self.assertEqual(self.controller.rundir, ovn.rundir())
        self.assertTrue(ovn.check_controller().ok)
        self.useFixture(fixtures.EnvironmentVariable('OVN_RUNDIR', None))
        self.assertEqual('/run/ovn', ovn.rundir())

    def test_encap(self):
        r = ovn.check_encap(self.detected(), self.netdevs)
        self.assertTrue(r.ok, r.message)
        self.assertEqual(UPLINK, r.detail)
        self.ovs.ids['ovn-encap-ip'] = '192.0.2.99'
        r = ovn.check_encap(self.detected(), self.netdevs)
        self.assertEqual(checks.Status.FAILURE, r.status)
        self.assertIn('which no netdev of this host holds', r.message)
        self.ovs.ids['ovn-encap-ip'] = 'not-an-ip'
        self.assertEqual(checks.Status.FAILURE,
                         ovn.check_encap(self.detected(),
                                         self.netdevs).status)
        self.ovs.ids.update({'ovn-encap-ip': '192.0.2.10',
                             'ovn-encap-type': 'geneve,stt'})
        r = ovn.check_encap(self.detected(), self.netdevs)
        self.assertEqual(checks.Status.WARNING, r.status)
        self.assertIn('stt cannot be offloaded', r.message)
        del self.ovs.ids['ovn-encap-type']
        r = ovn.check_encap(self.detected(), self.netdevs)
        self.assertIn('external_ids:ovn-encap-type unset', r.message)

    def test_encap_offload_on_the_uplink(self):
        r = ovn.check_encap_offload(self.detected(), self.netdevs, self.ovs,
                                    [UPLINK])
        self.assertTrue(r.ok, r.message)
        FakeIoctlEthtool.netdevs[UPLINK] = {'hw-tc-offload': (False, True)}
        r = ovn.check_encap_offload(self.detected(), self.netdevs, self.ovs,
                                    [UPLINK])
        self.assertEqual(checks.Status.WARNING, r.status)
        self.assertIn('hw-tc-offload off', r.message)

    def test_encap_offload_elsewhere(self):
        self.ovs.ids['ovn-encap-ip'] = '198.51.100.9'
        r = ovn.check_encap_offload(self.detected(), self.netdevs, self.ovs,
                                    [UPLINK])
        self.assertEqual(checks.Status.WARNING, r.status)
        self.assertIn('the encap IP is on eth1', r.message)

    def test_encap_offload_through_a_bridge_with_the_uplink(self):
        self.ovs.ids['ovn-encap-ip'] = '203.0.113.4'
        self.ovs.bridges['br-ex'] = ''
        self.ovs.plug('br-ex', bridge='br-ex', iface_id=None, mac=None)
        r = ovn.check_encap_offload(self.detected(), self.netdevs, self.ovs,
                                    [UPLINK])
        self.assertEqual(checks.Status.WARNING, r.status)  # not a port
        self.ovs.plug(UPLINK, bridge='br-ex', iface_id=None, mac=None)
        r = ovn.check_encap_offload(self.detected(), self.netdevs, self.ovs,
                                    [UPLINK])
        self.assertTrue(r.ok, r.message)
        self.assertIn('(via br-ex)', r.message)
        # No VF known: a netdev with a switch id and no VF port name.
        r = ovn.check_encap_offload(self.detected(), self.netdevs, self.ovs,
                                    [])
        self.assertTrue(r.ok, r.message)

    def test_summary_on_an_ovn_chassis(self):
        with mock.patch.dict(os.environ,
                             {'OVN_RUNDIR': self.controller.rundir}):
            results = checks.host_summary(['0000:08:00.2'], self.ovs,
                                          self.netdevs, self.devlink)
        by_name = {r.name: r for r in results}
        self.assertEqual(checks.Status.SUCCESS, checks.worst(results),
                         [r.message for r in results if not r.ok])
        self.assertIn('ML2/OVN', by_name['mechanism'].message)
        for name in ('ovn-chassis', 'ovn-controller', 'ovn-encap',
                     'ovn-encap-offload'):
            self.assertIn(name, by_name)
        self.assertEqual(UPLINK, by_name['ovn-encap-offload'].detail)
        # Tunnels through another NIC's uplink: that NIC does not hold
        # the VFs' flows.
        self.ovs.ids['ovn-encap-ip'] = '192.0.2.77'
        with mock.patch.dict(os.environ,
                             {'OVN_RUNDIR': self.controller.rundir}):
            by_name = {r.name: r for r in checks.host_summary(
                ['0000:08:00.2'], self.ovs, self.netdevs, self.devlink)}
        self.assertEqual(checks.Status.WARNING,
                         by_name['ovn-encap-offload'].status)
        self.assertIn('which is not %s' % UPLINK,
                      by_name['ovn-encap-offload'].message)
        # The ML2/OVS host runs none of them.
        results = checks.host_summary(['0000:08:00.2'], FakeOvsdb(),
                                      self.netdevs, self.devlink)
        self.assertEqual([], [r for r in results
                              if r.name.startswith('ovn-')])

    def test_missing_br_int_names_ovn(self):
        del self.ovs.bridges['br-int']
        r = checks.check_integration_bridge(self.ovs, 'br-int',
                                            mechanism.Mechanism.OVN)
        self.assertIn('start ovn-controller', r.message)
        self.ovs.bridges['br-int'] = 'netdev'
        r = checks.check_integration_bridge(self.ovs, 'br-int',
                                            mechanism.Mechanism.OVN)
        self.assertIn('ovn-bridge-datapath-type=system', r.message)

    def test_ready_before_allocation(self):
        rundir = self.controller.rundir
        self.assertEqual([], [r for r in checks.check_mechanism_ready(
            self.ovs, rundir) if not r.ok])
        self.ovs.sb_up = False
        refused = [r.name for r in checks.check_mechanism_ready(
            self.ovs, rundir) if not r.ok]
        self.assertEqual(['ovn-controller'], refused)
        # ML2/OVS: nothing to check beyond the VF.
        self.assertEqual([], checks.check_mechanism_ready(FakeOvsdb(),
                                                          rundir))


class TestPortView(base.TestCase):

    def setUp(self):
        super().setUp()
        self.ovs = FakeChassis()
        self.ovs.plug(REP)

    def test_plugged_and_installed_only_when_bound(self):
        r = checks.verify_plugged(self.ovs, PORT, MAC, REP,
                                  mechanism=mechanism.Mechanism.OVN)
        self.assertTrue(r.ok, r.message)
        self.ovs.controller_loop()
        r = checks.check_programmed(self.ovs, PORT, REP,
                                    mechanism.Mechanism.OVN)
        self.assertEqual(checks.Status.WARNING, r.status)
        self.assertIn('has not claimed it', r.message)
        self.ovs.bound.add(PORT)
        self.ovs.controller_loop()
        r = checks.check_programmed(self.ovs, PORT, REP,
                                    mechanism.Mechanism.OVN)
        self.assertTrue(r.ok)
        self.assertEqual('ovn-installed', r.detail)
        # A lost southbound connection leaves ovn-installed in place.
        self.ovs.sb_up = False
        self.ovs.controller_loop()
        self.assertTrue(checks.check_programmed(
            self.ovs, PORT, REP, mechanism.Mechanism.OVN).ok)

    def test_wrong_row_names_ovn(self):
        r = checks.verify_plugged(self.ovs, 'other-port', MAC, REP,
                                  mechanism=mechanism.Mechanism.OVN)
        self.assertEqual(checks.Status.FAILURE, r.status)
        self.assertIn('ovn-controller will not claim port other-port',
                      r.message)
        self.assertNotIn('OVS agent', r.message)

    def test_ml2_ovs_programmed_is_the_agents_tag(self):
        ovs = FakeOvsdb()
        ovs.plug(REP)
        r = checks.check_programmed(ovs, PORT, REP)
        self.assertTrue(r.ok)
        self.assertEqual('tag 3', r.detail)
        ovs.rows[REP] = ovsdb.InterfaceRow(**dict(
            ovs.rows[REP].__dict__, tag=checks.DEAD_VLAN_TAG))
        self.assertEqual(checks.Status.FAILURE,
                         checks.check_programmed(ovs, PORT, REP).status)
        ovs.rows[REP] = ovsdb.InterfaceRow(**dict(
            ovs.rows[REP].__dict__, tag=None))
        self.assertEqual(checks.Status.WARNING,
                         checks.check_programmed(ovs, PORT, REP).status)

    def test_tunnel_view(self):
        self.ovs.tunnel('chassis-2', '192.0.2.20')
        (row,) = self.ovs.tunnel_ports('br-int')
        self.assertEqual({'name': 'ovn-chass-0', 'type': 'geneve',
                          'remote_ip': '192.0.2.20', 'ofport': 7,
                          'chassis': 'chassis-2'}, ovn.tunnel_view(row))

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

"""The OVS-side checks and the after-plug verification, on a fake OVSDB.

The fake holds rows the way ovsdb-server and ovs-vswitchd leave them: a
bridge's ``datapath_type`` is '' unless set, an Interface vswitchd could
not open has ``ofport`` -1 and an ``error``, a row not yet seen by
vswitchd has no ofport. The same situations are produced on the real OVS
in tests/functional/test_network_offload.py.
"""

import logging
import os
import socket

import fixtures

from nova_vdpa import exception
from nova_vdpa.network import checks
from nova_vdpa.network import ovsdb
from tests.unit import base
from tests.unit.fake_network import FakeIoctlEthtool
from tests.unit.fake_network import FakeOvsdb
from tests.unit.fake_network import MAC
from tests.unit.fake_network import NetdevTestCase
from tests.unit.fake_network import PORT
from tests.unit.fake_network import REP


class TestOvsChecks(base.TestCase):

    def setUp(self):
        super().setUp()
        self.ovs = FakeOvsdb()

    def test_hw_offload(self):
        self.assertTrue(checks.check_hw_offload(self.ovs).ok)
        for value in (None, 'false'):
            if value is None:
                del self.ovs.config['hw-offload']
            else:
                self.ovs.config['hw-offload'] = value
            r = checks.check_hw_offload(self.ovs)
            self.assertEqual(checks.Status.WARNING, r.status)
            self.assertIn('ovs-vsctl set Open_vSwitch . '
                          'other_config:hw-offload=true', r.message)
            self.assertIn('restart ovs-vswitchd', r.message)

    def test_integration_bridge(self):
        self.assertTrue(checks.check_integration_bridge(self.ovs).ok)
        self.ovs.bridges['br-int'] = 'system'
        self.assertTrue(checks.check_integration_bridge(self.ovs).ok)
        self.ovs.bridges['br-int'] = 'netdev'
        r = checks.check_integration_bridge(self.ovs)
        self.assertEqual(checks.Status.FAILURE, r.status)
        self.assertIn('vhostuser', r.message)
        self.assertIn('datapath_type = system', r.message)
        del self.ovs.bridges['br-int']
        r = checks.check_integration_bridge(self.ovs)
        self.assertIn('br-int does not exist', r.message)


class TestVerifyPlugged(base.TestCase):

    def setUp(self):
        super().setUp()
        self.ovs = FakeOvsdb()

    def verify(self, **kw):
        return checks.verify_plugged(self.ovs, kw.get('port', PORT),
                                     kw.get('mac', MAC), REP)

    def test_good_row(self):
        self.ovs.plug(REP)
        r = self.verify()
        self.assertTrue(r.ok)
        self.assertIn('ofport 5', r.message)
        # MACs compare case-insensitively (libvirt and Neutron differ).
        self.assertTrue(self.verify(mac=MAC.upper()).ok)

    def test_no_row(self):
        r = self.verify()
        self.assertEqual(checks.Status.FAILURE, r.status)
        self.assertIn('%s has no Interface row' % REP, r.message)

    def test_each_problem_named(self):
        cases = [
            (dict(ofport=-1, error='could not open network device'),
             ['ofport is -1', 'could not open network device']),
            (dict(ofport=None), ['ofport is None']),
            (dict(iface_id=None), ['iface-id is None']),
            (dict(iface_id='another'), ['iface-id is another']),
            (dict(mac='fa:16:3e:00:00:00'), ['attached-mac is fa:16:3e:00']),
            (dict(bridge='br-ex'), ['on bridge br-ex, not br-int']),
        ]
        for kwargs, wanted in cases:
            self.ovs.plug(REP, **kwargs)
            r = self.verify()
            self.assertEqual(checks.Status.FAILURE, r.status, kwargs)
            for text in wanted:
                self.assertIn(text, r.message)
            self.assertIn('will not report port %s up' % PORT, r.message)


class TestSummary(NetdevTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatch(
            'pyroute2.ethtool.ioctl.IoctlEthtool',
            FakeIoctlEthtool))
        FakeIoctlEthtool.netdevs = {
            name: {'hw-tc-offload': (True, True)}
            for name in ('enp8s0f0np0', 'enp8s0f0npf0vf0',
                         'enp8s0f0npf0vf1')}

    def test_good_host(self):
        results = checks.host_summary(['0000:08:00.3', '0000:08:00.2'],
                                      FakeOvsdb(), self.netdevs,
                                      self.devlink)
        self.assertEqual(checks.Status.SUCCESS, checks.worst(results))
        names = [(r.name, r.subject) for r in results]
        # The PF and its uplink are checked once, each VF's representor.
        self.assertEqual(1, names.count(('switchdev', 'pci/0000:08:00.0')))
        self.assertEqual(1, names.count(('hw-tc-offload', 'enp8s0f0np0')))
        self.assertIn(('representor', '0000:08:00.2'), names)
        self.assertIn(('representor', '0000:08:00.3'), names)
        log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        self.assertEqual(checks.Status.SUCCESS,
                         checks.log_summary(results, logging.getLogger()))
        self.assertEqual(1, len(log.output.splitlines()))

    def test_bad_host_logs_each_problem(self):
        ovs = FakeOvsdb()
        ovs.config = {}
        results = checks.host_summary(['0000:08:00.4'], ovs, self.netdevs,
                                      self.devlink)
        log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        self.assertEqual(checks.Status.FAILURE,
                         checks.log_summary(results, logging.getLogger()))
        self.assertIn('hw-offload', log.output)
        self.assertIn('0000:08:00.4 (VF 2 of pci/0000:08:00.0) has no '
                      'representor', log.output)

    def test_ovsdb_unreachable(self):
        results = checks.host_summary([], None, self.netdevs, self.devlink)
        self.assertEqual(checks.Status.FAILURE, results[0].status)
        self.assertIn('ovsdb_connection', results[0].message)


class TestOvsdbReader(base.TestCase):

    def test_missing_socket_is_one_clear_error(self):
        e = self.assertRaises(exception.OvsdbUnavailable,
                              ovsdb.OvsdbReader, 'unix:/nonexistent/db.sock')
        self.assertIn('/nonexistent/db.sock', e.message)
        self.assertIn('is ovsdb-server running', e.message)

    def test_refused_connection_is_one_clear_error(self):
        # A socket file nobody listens on (ovsdb-server stopped): our
        # bounded connect answers before ovsdbapp's unbounded one runs.
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'db.sock')
        sock = socket.socket(socket.AF_UNIX)
        self.addCleanup(sock.close)
        sock.bind(path)
        log = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        e = self.assertRaises(exception.OvsdbUnavailable,
                              ovsdb.OvsdbReader, 'unix:' + path, timeout=1)
        self.assertIn(path, e.message)
        self.assertIn('cannot connect within 1 s: Connection refused',
                      e.message)
        self.assertNotIn('Unable to open stream', log.output)

    def test_optional_columns(self):
        self.assertIsNone(ovsdb._single([]))
        self.assertEqual(5, ovsdb._single([5]))
        self.assertEqual(5, ovsdb._single(5))


class TestRunHostChecks(NetdevTestCase):

    def test_ovsdb_unreachable_is_reported_not_raised(self):
        self.useFixture(fixtures.MockPatch(
            'nova_vdpa.kernel.netdev.Netdevs', lambda: self.netdevs))
        self.useFixture(fixtures.MockPatch(
            'nova_vdpa.kernel.devlink.DevlinkClient',
            lambda: _Closing(self.devlink)))
        self.useFixture(fixtures.MockPatch(
            'pyroute2.ethtool.ioctl.IoctlEthtool',
            FakeIoctlEthtool))
        results = checks.run_host_checks(['0000:08:00.2'],
                                         'unix:/nonexistent/db.sock')
        self.assertEqual('ovsdb', results[0].name)
        self.assertIn('/nonexistent/db.sock: no such socket',
                      results[0].message)
        self.assertEqual(checks.Status.FAILURE, results[0].status)
        self.assertIn(('representor', '0000:08:00.2'),
                      [(r.name, r.subject) for r in results])


class _Closing:
    def __init__(self, client):
        self.client = client
        self.closed = False

    def eswitch(self, handle):
        return self.client.eswitch(handle)

    def close(self):
        self.closed = True

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

"""``nova-vdpa-status``: output formats, one-line answers, exit codes.

The host is a fake with the same methods as :class:`nova_vdpa.cmd.host.Host`
(what it reads from a real host is covered by the unit tests of each
reader and by tests/functional/test_network_offload.py); the listings of
the real Host are tested over a fake allocator and kernel reads.
"""

import io
import json
from unittest import mock

import fixtures

from nova_vdpa.cmd import host as host_mod
from nova_vdpa.cmd import status
from nova_vdpa.compute import install
from nova_vdpa.compute import overrides
from nova_vdpa.compute import releases
from nova_vdpa import exception
from nova_vdpa.kernel import model
from nova_vdpa.kernel import netlink
from nova_vdpa.network import checks
from tests.unit import base

PORT = '0c1e5f44-5cf0-4b0e-9a55-3f3c5c5ad1c1'
SITE = '/opt/nova/lib/python3.11/site-packages'
INSTALLED = install.Layout(SITE + '/nova/virt',
                           SITE + '/nova/virt/nova_vdpa/__init__.py',
                           SITE + '/nova_vdpa/__init__.py')


class FakeHost:
    def __init__(self, conf=None):
        self.closed = False
        self.network = [
            checks.CheckResult('hw-offload', 'Open_vSwitch',
                               checks.Status.SUCCESS, 'on'),
            checks.CheckResult('switchdev', 'pci/0000:08:00.0',
                               checks.Status.SUCCESS, 'switchdev'),
            checks.CheckResult('representor', '0000:08:00.2',
                               checks.Status.SUCCESS, 'representor r0',
                               detail='r0'),
            checks.CheckResult('hw-tc-offload', 'r0',
                               checks.Status.SUCCESS, 'on'),
        ]
        self.rows = []
        self.error = None

    def close(self):
        self.closed = True

    def kernel(self):
        return 0, 'answers'

    def vhost_vdpa(self):
        return 0, 'loaded'

    def hypervisor(self):
        return 0, 'libvirt 9.0.0, QEMU 7.2.0'

    def management_devices(self):
        return 0, '1 VF(s)'

    def concurrency(self):
        return 0, 'native threads, supported'

    def devices(self):
        return self.inventory()

    def network_results(self):
        return self.network

    def inventory(self):
        if self.error:
            raise self.error
        return self.rows

    def ports(self):
        return self.inventory()


class StatusTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.host = FakeHost()
        # The tests' own nova_vdpa is the checkout's, not the wheel's: a
        # real reading would warn. Each layout is tested on its own.
        self.layout = self.useFixture(fixtures.MockPatchObject(
            install, 'layout', return_value=INSTALLED)).mock
        self.useFixture(fixtures.MockPatchObject(
            overrides, 'nova_version', return_value='34.0.0'))
        self.out = self.useFixture(fixtures.MonkeyPatch(
            'sys.stdout', io.StringIO())).new_value

    def main(self, *argv):
        return status.main(list(argv), host_factory=lambda conf: self.host)


class TestCheck(StatusTestCase):

    def test_good_host_table(self):
        self.assertEqual(0, self.main('check'))
        text = self.out.getvalue()
        for name in ('Nova release', 'nova-vdpa installation',
                     'vdpa kernel support', 'vhost_vdpa driver',
                     'libvirt and QEMU', 'management devices',
                     'concurrency mode', 'Open vSwitch hw-offload',
                     'OVN chassis', 'switchdev', 'representors',
                     'hw-tc-offload'):
            self.assertIn('Check: %s' % name, text)
        # An ML2/OVS host: the OVN row says so and passes.
        self.assertIn('not an OVN chassis', text)
        self.assertTrue(self.host.closed)

    def test_ovn_chassis_failure(self):
        self.host.network += [
            checks.CheckResult('mechanism', 'Open_vSwitch',
                               checks.Status.SUCCESS, 'ML2/OVN (...)'),
            checks.CheckResult('ovn-controller', 'ovn-controller',
                               checks.Status.FAILURE,
                               "ovn-controller says 'not connected'"),
            checks.CheckResult('ovn-encap', 'Open_vSwitch',
                               checks.Status.SUCCESS, 'geneve tunnels')]
        self.assertEqual(2, self.main('check', '--format', 'json'))
        by_name = {c['check']: c for c in
                   json.loads(self.out.getvalue())['checks']}
        self.assertEqual(2, by_name['OVN chassis']['result'])
        self.assertIn('not connected', by_name['OVN chassis']['details'])
        self.assertEqual(0, by_name['Open vSwitch hw-offload']['result'])

    def test_failure_json(self):
        self.host.network[1] = checks.CheckResult(
            'switchdev', 'pci/0000:08:00.0', checks.Status.FAILURE,
            'PF pci/0000:08:00.0 is in eswitch mode legacy')
        self.assertEqual(2, self.main('check', '--format', 'json'))
        out = json.loads(self.out.getvalue())
        by_name = {c['check']: c for c in out['checks']}
        self.assertEqual(2, by_name['switchdev']['result'])
        self.assertIn('eswitch mode legacy', by_name['switchdev']['details'])
        self.assertEqual(0, by_name['representors']['result'])

    def test_warning_only_shows_the_worst(self):
        self.host.network.append(checks.CheckResult(
            'hw-tc-offload', 'r1', checks.Status.WARNING, 'off on r1'))
        self.assertEqual(1, self.main('check', '--format', 'json'))
        out = json.loads(self.out.getvalue())
        tc = [c for c in out['checks'] if c['check'] == 'hw-tc-offload'][0]
        self.assertEqual('r1: off on r1', tc['details'])

    def check_json(self):
        out = json.loads(self.out.getvalue())
        return {c['check']: c for c in out['checks']}

    def test_nova_release_found_and_supported(self):
        self.assertEqual(0, self.main('check', '--format', 'json'))
        self.assertEqual(
            {'result': 0, 'details': 'Nova 34.0.0 (2026.2): supported '
             '(nova-vdpa supports 31.3.x, 32.2.x, 33.0.x, 34.0.x)'},
            {k: v for k, v in self.check_json()['Nova release'].items()
             if k != 'check'})

    def test_unsupported_nova_release(self):
        overrides.nova_version.return_value = '35.0.0'
        self.assertEqual(2, self.main('check', '--format', 'json'))
        release = self.check_json()['Nova release']
        self.assertEqual(2, release['result'])
        self.assertIn('Nova 35.0.0 is not a supported release (supported: '
                      '31.3.x, 32.2.x, 33.0.x, 34.0.x)', release['details'])

    def test_an_older_supported_release(self):
        overrides.nova_version.return_value = '31.3.1'
        self.main('check', '--format', 'json')
        self.assertEqual(
            {'result': 0, 'details': 'Nova 31.3.1 (2025.1): supported '
             '(nova-vdpa supports 31.3.x, 32.2.x, 33.0.x, 34.0.x)'},
            {k: v for k, v in self.check_json()['Nova release'].items()
             if k != 'check'})

    def test_no_nova(self):
        overrides.nova_version.side_effect = ImportError('nova')
        self.assertEqual(2, self.main('check', '--format', 'json'))
        self.assertIn('has no Nova',
                      self.check_json()['Nova release']['details'])

    def test_installed_beside_nova(self):
        self.assertEqual(0, self.main('check', '--format', 'json'))
        self.assertEqual(
            'nova.virt.nova_vdpa is %s/nova/virt/nova_vdpa/__init__.py'
            % SITE,
            self.check_json()['nova-vdpa installation']['details'])

    def test_shim_not_beside_nova(self):
        self.layout.return_value = install.Layout(
            INSTALLED.nova_virt, None,
            '/root/.local/lib/python3.11/site-packages/nova_vdpa/'
            '__init__.py')
        self.assertEqual(2, self.main('check', '--format', 'json'))
        checked = self.check_json()['nova-vdpa installation']
        self.assertEqual(2, checked['result'])
        self.assertIn('nova.virt.nova_vdpa is not importable',
                      checked['details'])

    def test_package_from_elsewhere_warns(self):
        self.layout.return_value = install.Layout(
            INSTALLED.nova_virt, INSTALLED.shim,
            '/src/nova-vdpa/nova_vdpa/__init__.py')
        self.assertEqual(1, self.main('check', '--format', 'json'))
        checked = self.check_json()['nova-vdpa installation']
        self.assertEqual(1, checked['result'])
        self.assertIn('the nova_vdpa package in use is in /src/nova-vdpa',
                      checked['details'])


class TestListings(StatusTestCase):

    def test_nothing_allocated_is_one_line(self):
        self.assertEqual(0, self.main('ports'))
        self.assertEqual('No vdpa port is allocated on this host.\n',
                         self.out.getvalue())

    def test_nothing_reachable_is_one_line(self):
        self.host.error = exception.VdpaNotLoaded(device='-', mgmtdev='-',
                                                  attribute='-')
        self.assertEqual(2, self.main('inventory'))
        lines = self.out.getvalue().splitlines()
        self.assertEqual(1, len(lines))
        self.assertTrue(lines[0].startswith('inventory: kernel vdpa support '
                                            'not loaded'))
        self.assertTrue(self.host.closed)

    def test_unexpected_error(self):
        self.host.error = RuntimeError('boom')
        self.assertEqual(255, self.main('inventory'))
        self.assertIn('boom', self.out.getvalue())

    def test_ovn_port_row(self):
        row = {'port': PORT, 'vf': '0000:08:00.2', 'representor': 'r0',
               'ofport': 7, 'tag': None, 'mechanism': 'ML2/OVN',
               'plugged': 'Interface r0 in br-int, ofport 7, iface-id x',
               'programmed': "ovn-installed: ovn-controller installed the "
                             "port's flows",
               'tunnels': [{'name': 'ovn-chass-0', 'type': 'geneve',
                            'remote_ip': '192.0.2.20', 'ofport': 3,
                            'chassis': 'chassis-2'}],
               'flows': [], 'traffic': {}}
        self.host.rows = [row]
        self.assertEqual(0, self.main('ports'))
        text = self.out.getvalue()
        for cell in ('ovn-installed', 'ovn-chass-0 192.0.2.20 (chassis '
                     'chassis-2)'):
            self.assertIn(cell, text)

    def test_ports_table_and_json(self):
        row = {'port': PORT, 'vf': '0000:08:00.2', 'representor': 'r0',
               'ofport': 7, 'tag': 3, 'plugged': 'Interface r0 in br-int',
               'tunnels': [{'name': 'vxlan-0a000002', 'type': 'vxlan',
                            'remote_ip': '10.0.0.2', 'ofport': 2}],
               'flows': [{'in_port': 'r0', 'match': 'recirc_id(0),in_port(r0)',
                          'actions': 'vxlan_sys_4789', 'packets': 12,
                          'bytes': 1200, 'used': '0.1s', 'dp': 'tc',
                          'offloaded': 'yes', 'raw': '...'}]}
        row['traffic'] = {'rx_packets': 12, 'rx_drops': 0, 'tx_packets': 12}
        self.host.rows = [dict(row)]
        self.assertEqual(0, self.main('ports'))
        text = self.out.getvalue()
        for cell in (PORT, 'r0', 'vxlan-0a000002 10.0.0.2',
                     'rx 12 pkts 0 drops', 'tx 12 pkts',
                     'dp:tc offloaded:yes packets:12 r0 -> vxlan_sys_4789'):
            self.assertIn(cell, text)
        self.out.seek(0)
        self.out.truncate()
        self.host.rows = [dict(row)]
        self.assertEqual(0, self.main('ports', '--format', 'json'))
        self.assertEqual([row], json.loads(self.out.getvalue()))


class TestHostInventory(base.TestCase):
    """The real Host's listing over a fake allocator and kernel reads."""

    def setUp(self):
        super().setUp()
        conf = mock.Mock(libvirt_uri='test:///default')
        self.host = host_mod.Host(conf)
        alloc = mock.Mock()
        vf_mgmt = model.ManagementDevice.from_attrs({
            'VDPA_ATTR_MGMTDEV_BUS_NAME': 'pci',
            'VDPA_ATTR_MGMTDEV_DEV_NAME': '0000:08:00.2',
            'VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES': 2})
        free = model.ManagementDevice.from_attrs({
            'VDPA_ATTR_MGMTDEV_BUS_NAME': 'pci',
            'VDPA_ATTR_MGMTDEV_DEV_NAME': '0000:08:00.3',
            'VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES': 2})
        alloc.vf_management_devices.return_value = {
            '0000:08:00.2': vf_mgmt, '0000:08:00.3': free}
        self.host._allocator = alloc
        ours = model.VdpaDevice('nvdpa-' + PORT, 'pci/0000:08:00.2', 1,
                                None, 3, 256, None)
        other = model.VdpaDevice('vdpa9', 'vdpasim_net', 1, None, 3, 256,
                                 None)
        config = model.DeviceConfig('nvdpa-' + PORT, 1, 'fa:16:3e:00:00:01',
                                    1, 1450, None, None, None)
        self.useFixture(fixtures.MockPatchObject(
            self.host, '_devices',
            return_value=([ours, other], {config.name: config})))
        self.useFixture(fixtures.MockPatchObject(
            self.host, '_chardev', return_value='/dev/vhost-vdpa-0'))

    def test_rows(self):
        with mock.patch.object(self.host, '_instances',
                               return_value={'/dev/vhost-vdpa-0': 'vm1'}):
            rows = self.host.inventory()
        self.assertEqual([
            {'vf': '0000:08:00.2', 'mgmtdev': 'pci/0000:08:00.2',
             'device': 'nvdpa-' + PORT, 'chardev': '/dev/vhost-vdpa-0',
             'mac': 'fa:16:3e:00:00:01', 'mtu': 1450, 'port': PORT,
             'instance': 'vm1'},
            {'vf': '0000:08:00.3', 'mgmtdev': 'pci/0000:08:00.3'}], rows)

    def test_instance_unknown_without_libvirt(self):
        with mock.patch.object(self.host, '_instances', return_value=None):
            rows = self.host.inventory()
        self.assertEqual('unknown', rows[0]['instance'])


class TestHostDevices(base.TestCase):
    """The real Host's devices listing: states from libvirt and /proc."""

    def setUp(self):
        super().setUp()
        self.host = host_mod.Host(mock.Mock(libvirt_uri='test:///default'))
        alloc = mock.Mock()
        self.ports = ['0c1e5f44-5cf0-4b0e-9a55-3f3c5c5ad1c%d' % i
                      for i in range(4)]
        alloc.owned_devices.return_value = [
            model.VdpaDevice('nvdpa-' + p, 'pci/0000:08:00.%d' % (i + 2), 1,
                             None, 3, 256, None)
            for i, p in enumerate(self.ports)]
        self.host._allocator = alloc
        self.useFixture(fixtures.MockPatchObject(
            self.host, '_chardev',
            side_effect=lambda name: '/dev/vhost-vdpa-%s' % name[-1]))
        held = {'/dev/vhost-vdpa-2': [host_mod.sysfs_mod.Holder(
            4242, 'qemu-system-x86_64 -name guest=instance-0002')]}
        self.useFixture(fixtures.MockPatchObject(
            self.host.sysfs, 'holders',
            side_effect=lambda chardev, name: held.get(chardev, [])))

    def test_states(self):
        with mock.patch.object(self.host, '_domains', return_value={
                '/dev/vhost-vdpa-0': ('vm0 (uuid0)', True),
                '/dev/vhost-vdpa-1': ('vm1 (uuid1)', False)}):
            rows = self.host.devices()
        self.assertEqual(
            [('in use', 'vm0 (uuid0)'),
             ('kept (its guest is shut off)', 'vm1 (uuid1)'),
             ('release waits for pid 4242 (qemu-system-x86_64 -name '
              'guest=instance-0002)', None),
             ('orphan candidate', None)],
            [(r['state'], r['instance']) for r in rows])
        self.assertEqual(self.ports, [r['port'] for r in rows])

    def test_without_libvirt_nothing_is_called_an_orphan(self):
        with mock.patch.object(self.host, '_domains', return_value=None):
            rows = self.host.devices()
        self.assertEqual({'unknown (libvirt did not answer)'},
                         {r['state'] for r in rows})


class TestConcurrency(base.TestCase):
    """nova-compute's mode, read from its /proc entry and nova.conf."""

    def setUp(self):
        super().setUp()
        self.proc = self.useFixture(fixtures.TempDir()).path
        self.conf = mock.Mock(concurrency_backend='auto')
        self.host = host_mod.Host(self.conf)
        self.host.sysfs.proc_root = self.proc

    def compute(self, *environ):
        import os
        pdir = os.path.join(self.proc, '321')
        os.makedirs(pdir)
        with open(os.path.join(pdir, 'cmdline'), 'wb') as f:
            f.write(b'/usr/bin/python3\0/usr/bin/nova-compute\0')
        with open(os.path.join(pdir, 'environ'), 'wb') as f:
            f.write(b'\0'.join(e.encode() for e in environ))

    def test_native_threads_from_the_environment(self):
        self.compute('PATH=/bin', 'OS_NOVA_DISABLE_EVENTLET_PATCHING=1')
        code, text = self.host.concurrency()
        self.assertEqual(checks.Status.SUCCESS, code)
        self.assertIn('native threads', text)
        self.assertIn('pid 321', text)

    def test_eventlet_is_supported_too(self):
        self.compute('OS_NOVA_DISABLE_EVENTLET_PATCHING=0')
        code, text = self.host.concurrency()
        self.assertEqual(checks.Status.SUCCESS, code)
        self.assertTrue(text.startswith('eventlet ('), text)
        self.assertIn('nova-vdpa runs in both', text)

    def test_unset_follows_nova_conf(self):
        self.compute('PATH=/bin')
        self.conf.concurrency_backend = 'eventlet'
        code, text = self.host.concurrency()
        self.assertEqual(checks.Status.SUCCESS, code)
        self.assertIn('concurrency_backend = eventlet', text)
        self.assertTrue(text.startswith('eventlet ('), text)

    def test_auto_is_the_release_default(self):
        self.compute('PATH=/bin')
        for version, mode in (('34.0.0', 'native threads'),
                              ('33.0.2', 'eventlet'),
                              ('31.3.1', 'eventlet')):
            with mock.patch.object(releases, 'installed',
                                   return_value=version):
                code, text = self.host.concurrency()
            self.assertEqual(checks.Status.SUCCESS, code)
            self.assertTrue(text.startswith(mode + ' ('), text)
            self.assertIn('the default of Nova %s' % version, text)


class TestTraffic(base.KernelTestCase):
    """The ports view's counters, read from a fake kernel."""

    def setUp(self):
        super().setUp()
        real = netlink.VdpaClient
        self.useFixture(fixtures.MockPatch(
            'nova_vdpa.kernel.netlink.VdpaClient',
            lambda: real(socket_factory=self.kernel.socket)))

    def test_counters_or_why_not(self):
        self.client.create_device('running', 'vdpasim_net')
        self.client.create_device('waiting', 'vdpasim_net')
        self.sysfs.bind('waiting')
        out = host_mod.Host.traffic(['running', 'waiting', 'gone'])
        self.assertEqual(7, out['running']['rx_packets'])
        self.assertEqual(4, out['running']['tx_drops'])
        self.assertNotIn('name', out['running'])
        self.assertIn('no negotiated features yet',
                      out['waiting']['unavailable'])
        self.assertIn('gone', out['gone']['unavailable'])

    def test_table_lines(self):
        self.assertEqual(
            ['rx 12 pkts 1 drops 0 errors 0 overruns',
             'tx 13 pkts 0 drops 0 errors'],
            status.traffic_summary({
                'rx_packets': 12, 'rx_drops': 1, 'rx_errors': 0,
                'rx_overruns': 0, 'rx_bytes': 100, 'tx_packets': 13,
                'tx_drops': 0, 'tx_errors': 0}))
        self.assertEqual(['not readable: no negotiated features yet'],
                         status.traffic_summary(
                             {'unavailable': 'no negotiated features yet'}))

    def test_permission_denied_is_said(self):
        self.client.create_device('running', 'vdpasim_net')
        self.kernel.cap_net_admin = False
        out = host_mod.Host.traffic(['running'])
        self.assertIn('CAP_NET_ADMIN', out['running']['unavailable'])

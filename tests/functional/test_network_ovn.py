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

"""The ML2/OVN checks and port view against real OVN on the bed.

Real pieces: Debian's OVN (ovn-central, ovn-host): the northbound and
southbound ovsdb-servers, ovn-northd, and ovn-controller on the bed's Open
vSwitch (kernel datapath) as chassis ``chassis-1``; a second chassis,
``chassis-2``, is another ovn-controller in its own network namespace with
its own OVSDB (and no ovs-vswitchd: it registers and gives chassis-1 a
Geneve tunnel, which is what the port view shows); netdevsim10 in
switchdev mode as in test_network_offload, chassis-1's tunnel IP on its
uplink.

The test plays Neutron's part with ovn-nbctl (a logical switch and one
logical port named after the Neutron port id) and reads what OVN did with
ovn-sbctl (``Port_Binding.chassis``): test set-up and observation only;
the code under test reads the local OVSDB through ovsdbapp and
ovn-controller's unixctl socket, nothing else. The representor is
plugged by os-vif's real ovs plugin with Nova's own VIF, as on ML2/OVS.

One OVN set-up for the class (the bed runs every test of it in one
boot): each test puts back what it breaks.
"""

import os
import shutil
import subprocess
import time
from unittest import mock
import uuid

from testtools import content

from nova_vdpa.kernel import devlink
from nova_vdpa.network import checks
from nova_vdpa.network import flows
from nova_vdpa.network import mechanism
from nova_vdpa.network import ovn
from nova_vdpa.network import ovsdb
from tests.functional import base
from tests.functional import test_network_offload as offload

NB_SCHEMA = '/usr/share/ovn/ovn-nb.ovsschema'
SB_SCHEMA = '/usr/share/ovn/ovn-sb.ovsschema'
VSWITCH_SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema'
ENCAP_IP = '192.0.2.10'
ENCAP_IP2 = '192.0.2.20'
NETNS2 = 'nvchassis2'
CHASSIS, CHASSIS2 = 'chassis-1', 'chassis-2'
MAC = 'fa:16:3e:00:0a:01'


def run(*argv, env=None):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env=env)
    if proc.returncode:
        raise RuntimeError('%s: %s' % (' '.join(argv), proc.stderr.strip()))
    return proc.stdout


class OvnBed:
    """Northbound, southbound, northd and two chassis, in one folder."""

    def __init__(self):
        self.dir = os.path.join(os.environ['OVS_RUNDIR'], 'ovn')
        self.dir2 = os.path.join(self.dir, 'chassis2')
        self.logs = os.environ.get('NOVA_VDPA_TESTBED_LOGS', self.dir)
        os.makedirs(self.dir2, exist_ok=True)
        self.nb = 'unix:%s/nb.sock' % self.dir
        self.sb = 'unix:%s/sb.sock' % self.dir
        self.db2 = 'unix:%s/db.sock' % self.dir2

    def env(self, rundir):
        return dict(os.environ, OVN_RUNDIR=rundir, OVN_LOGDIR=self.logs,
                    OVN_DBDIR=rundir)

    def db_server(self, name, schema, *remotes):
        db = os.path.join(self.dir, '%s.db' % name)
        if not os.path.exists(db):
            run('ovsdb-tool', 'create', db, schema)
        run('ovsdb-server', db, *('--remote=%s' % r for r in remotes),
            '--pidfile=%s/%s.pid' % (self.dir, name),
            '--unixctl=%s/%s.ctl' % (self.dir, name), '--detach',
            '--log-file=%s/ovn-%s.log' % (self.logs, name), '-vconsole:off')

    def start_sb(self):
        self.db_server('sb', SB_SCHEMA, 'p' + self.sb)

    def ensure_sb(self):
        """Start the southbound server unless it runs (its socket is up)."""
        if not os.path.exists('%s/sb.ctl' % self.dir):
            self.start_sb()

    def stop_sb(self):
        run('ovs-appctl', '-t', '%s/sb.ctl' % self.dir, 'exit')

    def start(self):
        self.db_server('nb', NB_SCHEMA, 'p' + self.nb)
        self.start_sb()
        run('ovn-northd', '--ovnnb-db=' + self.nb, '--ovnsb-db=' + self.sb,
            '--pidfile', '--detach', '--log-file', '-vconsole:off',
            env=self.env(self.dir))
        self.vsctl('set', 'Open_vSwitch', '.', *self.chassis_ids())
        self.start_controller()
        # chassis-2: its own network namespace and OVSDB.
        run('ip', 'netns', 'add', NETNS2)
        db2 = os.path.join(self.dir2, 'conf.db')
        run('ovsdb-tool', 'create', db2, VSWITCH_SCHEMA)
        self.in_ns2('ovsdb-server', db2, '--remote=p' + self.db2,
                    '--pidfile=%s/ovsdb-server.pid' % self.dir2,
                    '--unixctl=%s/ovsdb-server.ctl' % self.dir2, '--detach',
                    '--log-file=%s/chassis2-ovsdb.log' % self.logs,
                    '-vconsole:off')
        run('ovs-vsctl', '--db=' + self.db2, '--no-wait', 'init', '--',
            'set', 'Open_vSwitch', '.', 'external_ids:system-id=' + CHASSIS2,
            'external_ids:ovn-remote=' + self.sb,
            'external_ids:ovn-encap-type=geneve',
            'external_ids:ovn-encap-ip=' + ENCAP_IP2)
        self.in_ns2('ovn-controller', self.db2,
                    '--pidfile=%s/ovn-controller.pid' % self.dir2,
                    '--detach', '--log-file=%s/chassis2-controller.log'
                    % self.logs, '-vconsole:off', env=self.env(self.dir2))

    def chassis_ids(self):
        return ('external_ids:system-id=' + CHASSIS,
                'external_ids:ovn-remote=' + self.sb,
                'external_ids:ovn-encap-type=geneve',
                'external_ids:ovn-encap-ip=' + ENCAP_IP)

    def start_controller(self):
        run('ovn-controller', os.environ['NOVA_VDPA_TESTBED_OVSDB'],
            '--pidfile', '--detach', '--log-file', '-vconsole:off',
            env=self.env(self.dir))

    def in_ns2(self, *argv, env=None):
        return run('ip', 'netns', 'exec', NETNS2, *argv, env=env)

    def appctl(self, rundir, daemon, *args):
        return run('ovn-appctl', '-t', flows.daemon_socket(rundir, daemon),
                   *args)

    def stop(self):
        for rundir in (self.dir2, self.dir):
            for daemon in ('ovn-controller', 'ovn-northd'):
                try:
                    self.appctl(rundir, daemon, 'exit')
                except Exception:
                    pass
        for ctl in ('%s/ovsdb-server.ctl' % self.dir2,
                    '%s/nb.ctl' % self.dir, '%s/sb.ctl' % self.dir):
            subprocess.run(['ovs-appctl', '-t', ctl, 'exit'],
                           capture_output=True)
        subprocess.run(['ip', 'netns', 'del', NETNS2], capture_output=True)
        subprocess.run(['ovs-vsctl', '--timeout=30', '--if-exists', 'del-br',
                        'br-int'], capture_output=True)
        subprocess.run(['ovs-vsctl', '--timeout=30', 'remove',
                        'Open_vSwitch', '.', 'external_ids', 'system-id',
                        'ovn-remote', 'ovn-encap-type', 'ovn-encap-ip'],
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def vsctl(*args):
        return run('ovs-vsctl', '--timeout=30', *args)

    def nbctl(self, *args):
        return run('ovn-nbctl', '--db=' + self.nb, *args)

    def sbctl(self, *args):
        return run('ovn-sbctl', '--db=' + self.sb, *args)

    def binding_chassis(self, port_id):
        """The Chassis name of the port's Port_Binding, or ''."""
        uuid_ = self.sbctl('--bare', '--columns=chassis', 'find',
                           'Port_Binding', 'logical_port=%s' % port_id)
        if not uuid_.strip():
            return ''
        return self.sbctl('--bare', '--columns=name', 'list', 'Chassis',
                          uuid_.strip()).strip()


class TestOvn(base.BedTestCase):
    services = ('ovs',)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        t0 = time.monotonic()
        offload.ensure_netdevsim()
        cls.rep, cls.uplink = offload.switchdev_netdevs()
        for ifname in (cls.uplink, cls.rep):
            set_tc_offload(ifname, True)
        run('ip', 'addr', 'add', ENCAP_IP + '/24', 'dev', cls.uplink)
        run('ip', 'link', 'set', cls.uplink, 'up')
        cls.bed = OvnBed()
        try:
            cls.bed.vsctl('set', 'Open_vSwitch', '.',
                          'other_config:hw-offload=true')
            cls.bed.start()
            cls.port_id = str(uuid.uuid4())
            cls.bed.nbctl('ls-add', 'net1', '--', 'lsp-add', 'net1',
                          cls.port_id, '--', 'lsp-set-addresses',
                          cls.port_id, '%s 10.0.0.5' % MAC)
            cls.ovs = ovsdb.OvsdbReader(os.environ['NOVA_VDPA_TESTBED_OVSDB'])
            offload.wait_for(lambda: cls.ovs.bridge_datapath_type('br-int')
                             is not None, 'ovn-controller to create br-int')
        except Exception:
            cls._tear_down()
            raise
        cls.setup_seconds = time.monotonic() - t0

    @classmethod
    def _tear_down(cls):
        if getattr(cls, 'ovs', None) is not None:
            cls.ovs.close()
        cls.bed.stop()
        subprocess.run(['ip', 'addr', 'del', ENCAP_IP + '/24', 'dev',
                        cls.uplink], capture_output=True)
        subprocess.run(['ovs-vsctl', '--timeout=30', 'remove', 'Open_vSwitch',
                        '.', 'other_config', 'hw-offload'],
                       capture_output=True)

    @classmethod
    def tearDownClass(cls):
        cls._tear_down()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.addDetail('class set-up seconds', content.text_content(
            '%.1f' % self.setup_seconds))
        self.netdevs = offload.BedNetdevs(self.uplink)
        # ovn-controller's state must be good at the start of each test.
        offload.wait_for(lambda: self.check_controller().ok,
                         'ovn-controller connected', 60)

    def check_controller(self):
        return ovn.check_controller(self.bed.dir, self.bed.sb)

    def plug(self):
        """The representor in br-int, as os-vif plugs it for Nova."""
        offload.plug_with_os_vif(self, self.port_id, MAC, self.uplink)
        self.addCleanup(self.bed.vsctl, '--if-exists', 'del-port', self.rep)

    def summary(self):
        with devlink.DevlinkClient() as client:
            return {r.name: r for r in checks.host_summary(
                [offload.VF_ADDRESS], self.ovs, self.netdevs, client,
                ovn_rundir=self.bed.dir)}

    def ids(self, **changes):
        """Change the chassis's external_ids; put them back at cleanup."""
        for key, value in changes.items():
            if value is None:
                self.bed.vsctl('remove', 'Open_vSwitch', '.', 'external_ids',
                               key)
            else:
                self.bed.vsctl('set', 'Open_vSwitch', '.',
                               'external_ids:%s=%s' % (key, value))
        self.addCleanup(self.bed.vsctl, 'set', 'Open_vSwitch', '.',
                        *self.bed.chassis_ids())

    # -------------------------------------------------------- host checks
    def test_good_chassis_every_check_passes(self):
        detected = mechanism.detect(self.ovs)
        self.assertIs(mechanism.Mechanism.OVN, detected.mechanism)
        self.assertIn('ovn-remote=' + self.bed.sb, detected.evidence)
        results = self.summary()
        self.addDetail('checks', content.text_content('\n'.join(
            '%s %s %s' % (r.name, r.status.name, r.message)
            for r in results.values())))
        self.assertEqual(
            {'mechanism', 'hw-offload', 'integration-bridge',
             'switchdev', 'representor', 'hw-tc-offload', 'ovn-chassis',
             'ovn-controller', 'ovn-encap', 'ovn-encap-offload'},
            set(results))
        self.assertEqual({checks.Status.SUCCESS},
                         {r.status for r in results.values()})
        self.assertIn('ML2/OVN', results['mechanism'].message)
        self.assertEqual(CHASSIS, results['ovn-chassis'].detail)
        self.assertEqual(self.uplink, results['ovn-encap'].detail)
        self.assertEqual(self.uplink, results['ovn-encap-offload'].detail)
        self.assertEqual([], [r for r in checks.check_mechanism_ready(
            self.ovs, self.bed.dir) if not r.ok])

    def test_southbound_gone_then_back(self):
        self.bed.stop_sb()
        self.addCleanup(self.bed.ensure_sb)
        result = offload.wait_for(
            lambda: (lambda r: r if not r.ok else None)(
                self.check_controller()), 'not connected', 60)
        self.assertEqual(checks.Status.FAILURE, result.status)
        self.assertIn("'not connected'", result.message)
        self.assertIn(self.bed.sb, result.message)
        refused = [r for r in checks.check_mechanism_ready(
            self.ovs, self.bed.dir) if not r.ok]
        self.assertEqual(['ovn-controller'], [r.name for r in refused])
        self.bed.start_sb()
        offload.wait_for(lambda: self.check_controller().ok,
                         'connected again', 60)

    def test_controller_not_running(self):
        # ``exit --restart`` keeps the chassis and its rows, as a
        # restarting ovn-controller (package upgrade) leaves them.
        self.bed.appctl(self.bed.dir, 'ovn-controller', 'exit', '--restart')
        self.addCleanup(self.bed.start_controller)
        result = offload.wait_for(
            lambda: (lambda r: r if not r.ok else None)(
                self.check_controller()), 'ovn-controller gone', 30)
        self.assertIn('start ovn-controller', result.message)

    def test_chassis_without_remote(self):
        self.ids(**{'ovn-remote': None})
        result = self.summary()
        self.assertEqual(checks.Status.FAILURE,
                         result['ovn-chassis'].status)
        self.assertIn('external_ids:ovn-remote unset',
                      result['ovn-chassis'].message)
        # Still an OVN chassis: the encap keys say so.
        self.assertIn('ML2/OVN', result['mechanism'].message)

    def test_encapsulation_broken_each_way(self):
        self.ids(**{'ovn-encap-ip': None})
        result = self.summary()['ovn-encap']
        self.assertEqual(checks.Status.FAILURE, result.status)
        self.assertIn('ovn-encap-ip unset', result.message)
        self.ids(**{'ovn-encap-ip': '198.51.100.7'})
        result = self.summary()['ovn-encap']
        self.assertIn('which no netdev of this host holds', result.message)
        self.ids(**{'ovn-encap-ip': ENCAP_IP, 'ovn-encap-type': 'stt'})
        result = self.summary()['ovn-encap']
        self.assertEqual(checks.Status.WARNING, result.status)
        self.assertIn('stt cannot be offloaded', result.message)

    def test_encap_ip_off_the_uplink(self):
        run('ip', 'link', 'add', 'nvtun0', 'type', 'dummy')
        self.addCleanup(run, 'ip', 'link', 'del', 'nvtun0')
        run('ip', 'addr', 'add', '198.51.100.9/24', 'dev', 'nvtun0')
        self.assertEqual(['nvtun0'],
                         self.netdevs.address_owners('198.51.100.9'))
        self.ids(**{'ovn-encap-ip': '198.51.100.9'})
        results = self.summary()
        self.assertTrue(results['ovn-encap'].ok)
        result = results['ovn-encap-offload']
        self.assertEqual(checks.Status.WARNING, result.status)
        self.assertIn('the encap IP is on nvtun0', result.message)
        set_tc_offload(self.uplink, False)
        self.addCleanup(set_tc_offload, self.uplink, True)
        self.ids(**{'ovn-encap-ip': ENCAP_IP})
        result = self.summary()['ovn-encap-offload']
        self.assertEqual(checks.Status.WARNING, result.status)
        self.assertIn('hw-tc-offload off', result.message)

    # -------------------------------------------------------------- ports
    def test_plugged_claimed_installed_and_shown(self):
        phases = []
        t0 = time.monotonic()

        def phase(name):
            phases.append('%s %.1f s' % (name, time.monotonic() - t0))
        self.addCleanup(lambda: self.addDetail(
            'phases', content.text_content('\n'.join(phases))))
        self.plug()
        phase('plugged by os-vif')
        result = offload.wait_for(
            lambda: (lambda r: r if r.ok else None)(checks.verify_plugged(
                self.ovs, self.port_id, MAC, self.rep,
                mechanism=mechanism.Mechanism.OVN)), 'the plugged row')
        self.assertIn('iface-id %s' % self.port_id, result.message)
        # ovn-controller binds the logical port to this chassis ...
        offload.wait_for(lambda: self.bed.binding_chassis(self.port_id)
                         == CHASSIS, 'Port_Binding.chassis', 60)
        # ... and says the port's flows are in: ovn-installed.
        installed = offload.wait_for(
            lambda: (lambda r: r if r.ok else None)(checks.check_programmed(
                self.ovs, self.port_id, self.rep, mechanism.Mechanism.OVN)),
            'ovn-installed', 60)
        self.assertEqual('ovn-installed', installed.detail)
        phase('bound and ovn-installed')
        # Another port's id: not this row.
        other = checks.verify_plugged(self.ovs, str(uuid.uuid4()), MAC,
                                      self.rep,
                                      mechanism=mechanism.Mechanism.OVN)
        self.assertIn('ovn-controller will not claim', other.message)

        # chassis-2 gives chassis-1 a Geneve port on br-int.
        tunnel = offload.wait_for(
            lambda: [t for t in self.ovs.tunnel_ports('br-int')
                     if t.options.get('remote_ip') == ENCAP_IP2],
            'the Geneve tunnel to chassis-2', 60)[0]
        self.assertEqual('geneve', tunnel.type)
        phase('Geneve tunnel')

        # Frames from the "VM" through the representor, for its flows.
        offload.flows_from_the_vm(self, 'ovninj', self.rep, MAC)
        phase('datapath flows')

        rows = self.status_ports()
        phase('status ports')
        self.assertEqual(1, len(rows))
        row = rows[0]
        self.addDetail('row', content.text_content(repr(row)))
        self.assertEqual('ML2/OVN', row['mechanism'])
        self.assertEqual(self.rep, row['representor'])
        self.assertIn('ovn-installed', row['programmed'])
        self.assertIn({'name': tunnel.name, 'type': 'geneve',
                       'remote_ip': ENCAP_IP2, 'ofport': tunnel.ofport,
                       'chassis': CHASSIS2}, row['tunnels'])
        self.assertTrue(row['flows'])
        self.assertTrue(all(f['dp'] in ('tc', 'ovn', 'ovs')
                            for f in row['flows']))

    def status_ports(self):
        from nova_vdpa.cmd import host as host_mod
        from nova_vdpa.kernel import model

        conf = mock.Mock(ovsdb_connection=os.environ[
            'NOVA_VDPA_TESTBED_OVSDB'], ovs_rundir=None,
            integration_bridge='br-int', tunnel_bridge='br-tun',
            ovn_rundir=self.bed.dir)
        host = host_mod.Host(conf)
        host.netdevs = self.netdevs
        name = 'nvdpa-' + self.port_id
        device = mock.Mock(mgmtdev='vdpasim_net')
        device.name = name
        alloc = mock.Mock()
        alloc.owned_devices.return_value = [device]
        alloc.vf_management_devices.return_value = {
            offload.VF_ADDRESS: mock.Mock(handle='vdpasim_net')}
        host._allocator = alloc
        config = model.DeviceConfig(name, 1, MAC, 1, 1500, None, None, None)
        # The vDPA device is the allocator's business (its own bed
        # tests); here only its name and MAC matter.
        with mock.patch.object(host, '_devices',
                               return_value=([], {name: config})), \
                mock.patch.object(host, 'traffic',
                                  return_value={name: {}}):
            try:
                return host.ports()
            finally:
                host.close()


def set_tc_offload(ifname, on):
    from pyroute2.ethtool import ioctl

    from nova_vdpa.kernel import netdev

    eth = ioctl.IoctlEthtool(ifname)
    try:
        features = eth.get_features()
        features[netdev.HW_TC_OFFLOAD] = on
        eth.set_features(features)
    finally:
        eth.close()

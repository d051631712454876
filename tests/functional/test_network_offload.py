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

"""Offload checks, os-vif plugging and ``nova-vdpa-status`` on the bed.

Real pieces: Open vSwitch 3.1 with the kernel datapath, a netdevsim device
``netdevsim10`` with 4 VFs in devlink switchdev mode (real representor
netdevs with ``phys_switch_id`` / ``phys_port_name``, real devlink, real
ethtool features), vdpasim_net for the port's vDPA device.

Supplied by the test, because netdevsim's VFs are not PCI devices: the
PCI part of the walk only (VF address -> PF, VF index, uplink), as a
:class:`~nova_vdpa.kernel.netdev.VfPort` for a made-up VF address, and, for
os-vif, the three os-vif functions that read that same PCI sysfs
(``get_vf_num_by_pci_address``, ``get_ifname_by_pci_address``,
``get_function_by_ifname``). Everything from the uplink on is real.

One class, one netdevsim device and one OVS for every test: each test
puts back what it breaks. The whole file runs in one bed boot.
"""

import io
import json
import os
import subprocess
import time
from unittest import mock
import uuid

from testtools import content

from nova_vdpa import exception
from nova_vdpa.kernel import devlink
from nova_vdpa.kernel import model
from nova_vdpa.kernel import netdev
from nova_vdpa.network import checks
from nova_vdpa.network import flows
from nova_vdpa.network import mechanism
from nova_vdpa.network import ovsdb
from tests.functional import base

NSIM_ID = 10
HANDLE = 'netdevsim/netdevsim%d' % NSIM_ID
NSIM_DIR = '/sys/bus/netdevsim/devices/netdevsim%d' % NSIM_ID
VF_ADDRESS = '0000:00:05.1'   # made up: netdevsim VFs have no PCI address
VF_INDEX = 1
PF_ADDRESS = '0000:00:05.0'   # made up likewise (function 0 = pf0)


def run(*argv):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if proc.returncode:
        raise RuntimeError('%s: %s' % (' '.join(argv), proc.stderr.strip()))
    return proc.stdout


def sys_write(path, value):
    with open(path, 'w') as f:
        f.write(value)


def port_name(ifname):
    try:
        with open('/sys/class/net/%s/phys_port_name' % ifname) as f:
            return f.read().strip()
    except OSError:
        return None


def find_netdev(wanted):
    for name in os.listdir('/sys/class/net'):
        if port_name(name) == wanted:
            return name
    return None


def find_uplink():
    """netdevsim's port netdev: the one whose phys_port_name names no VF."""
    for name in sorted(os.listdir(NSIM_DIR + '/net')):
        pname = port_name(name)
        if pname and netdev.parse_port_name(pname)[1] is None:
            return name
    return None


def wait_for(fn, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError('timed out waiting for %s' % what)


def ensure_netdevsim():
    """netdevsim10 with 4 VFs, made once per boot."""
    if not os.path.isdir(NSIM_DIR):
        sys_write('/sys/bus/netdevsim/new_device', '%d 1' % NSIM_ID)
        wait_for(lambda: os.path.isdir(NSIM_DIR + '/net'), 'netdevsim')
        sys_write(NSIM_DIR + '/sriov_numvfs', '4')


def set_mode(mode):
    run('devlink', 'dev', 'eswitch', 'set', HANDLE, 'mode', mode)


def stable_names():
    """(representor, uplink) when the same in two looks 2 s apart."""
    def look():
        return find_netdev('pf0vf%d' % VF_INDEX), find_uplink()
    first = look()
    time.sleep(2)
    return first if None not in first and look() == first else None


def switchdev_netdevs():
    """Switchdev mode, then (representor of VF_INDEX, uplink).

    A mode change recreates the uplink and the representors under new
    ethN names (the bed has no udev to give stable ones), not all at
    once: the names are taken once they hold still.
    """
    set_mode('switchdev')
    return wait_for(stable_names, "netdevsim's netdevs", 90)


class BedNetdevs(netdev.Netdevs):
    """The real netdevs; only the PCI walk of our made-up VF is supplied."""

    def __init__(self, uplink):
        super().__init__()
        self.uplink = uplink

    def locate_vf(self, vf_address):
        if vf_address != VF_ADDRESS:
            return super().locate_vf(vf_address)
        return netdev.VfPort(vf_address=VF_ADDRESS, pf_bus='netdevsim',
                             pf_name='netdevsim%d' % NSIM_ID,
                             vf_index=VF_INDEX, pf_function=0,
                             uplink=self.uplink)


def plug_with_os_vif(test, port_id, mac, uplink):
    """os-vif's ovs plugin plugs the VIF nova builds for a vdpa port.

    Neutron's OVS and OVN drivers both bind a vdpa port ``vif_type=ovs``:
    the same VIF, the same plug. The caller removes the port again.
    """
    from nova.network import model
    from nova.network import os_vif_util
    from os_vif import objects
    from oslo_config import cfg
    from vif_plug_ovs import linux_net
    from vif_plug_ovs import ovs as ovs_plugin
    from vif_plug_ovs import privsep as ovs_privsep

    objects.register_all()
    # We are root in the bed: no privsep daemon.
    ovs_privsep.vif_plug.set_client_mode(False)
    cfg.CONF.register_opts(ovs_plugin.OvsPlugin.CONFIG_OPTS,
                           group='os_vif_ovs')
    cfg.CONF.set_override('ovsdb_connection',
                          os.environ['NOVA_VDPA_TESTBED_OVSDB'],
                          group='os_vif_ovs')
    plugin = ovs_plugin.OvsPlugin.load('ovs')
    network = model.Network(id=str(uuid.uuid4()), bridge='br-int',
                            subnets=[], vlan=None, mtu=1500)
    vif = model.VIF(
        id=port_id, address=mac, network=network, type='ovs',
        vnic_type=model.VNIC_TYPE_VDPA,
        details={'port_filter': True, 'ovs_hybrid_plug': False,
                 'datapath_type': 'system', 'bridge_name': 'br-int'},
        profile={'pci_slot': VF_ADDRESS, 'pci_vendor_info': '15b3:101e',
                 'physical_network': None},
        ovs_interfaceid=port_id, active=False)
    os_vif_vif = os_vif_util.nova_to_osvif_vif(vif)
    test.assertEqual('VIFHostDevice', type(os_vif_vif).__name__)
    info = objects.instance_info.InstanceInfo(
        uuid=str(uuid.uuid4()), name='instance-00000001',
        project_id=str(uuid.uuid4()))
    # The PCI part of os-vif's walk (see the module docstring).
    with mock.patch.object(linux_net, 'get_vf_num_by_pci_address',
                           return_value=str(VF_INDEX)), \
            mock.patch.object(linux_net, 'get_ifname_by_pci_address',
                              return_value=uplink), \
            mock.patch.object(linux_net, 'get_function_by_ifname',
                              return_value=(PF_ADDRESS, True)):
        plugin.plug(os_vif_vif, info)


class TestOffload(base.BedTestCase):
    services = ('ovs',)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ensure_netdevsim()
        cls.ovs = ovsdb.OvsdbReader(os.environ['NOVA_VDPA_TESTBED_OVSDB'])

    @classmethod
    def tearDownClass(cls):
        cls.ovs.close()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        # Found again for every test: a test may change the mode.
        self.rep, self.uplink = switchdev_netdevs()
        self.netdevs = BedNetdevs(self.uplink)
        self.devlink = devlink.DevlinkClient()
        self.addCleanup(self.devlink.close)
        self.addOnException(self._attach_netdevs)

    def _attach_netdevs(self, exc_info):
        """On failure, every netdev with its port name, and the eswitch."""
        names = sorted(os.listdir('/sys/class/net'))
        self.addDetail('netdevs', content.text_content(
            'representor %s, uplink %s\n%s\n%s' % (
                self.rep, self.uplink,
                '\n'.join('%s %s' % (n, port_name(n)) for n in names),
                run('devlink', 'dev', 'eswitch', 'show', HANDLE))))

    def vsctl(self, *args):
        # Test setup only (breaking and mending the host); the code under
        # test reads OVSDB through ovsdbapp.
        return run('ovs-vsctl', '--timeout=30', *args)

    # ---------------------------------------------------------- devlink
    def test_eswitch_switchdev_then_legacy(self):
        state = self.devlink.eswitch(HANDLE)
        self.assertEqual('switchdev', state.mode_name)
        port = self.netdevs.locate_vf(VF_ADDRESS)
        self.assertEqual(checks.Status.SUCCESS,
                         checks.check_eswitch(port, self.devlink).status)
        set_mode('legacy')
        self.addCleanup(self._restore_switchdev)
        self.assertFalse(self.devlink.eswitch(HANDLE).is_switchdev)
        result = checks.check_eswitch(port, self.devlink)
        self.assertEqual(checks.Status.FAILURE, result.status)
        self.assertIn('eswitch mode legacy', result.message)
        self.assertIn('devlink dev eswitch set %s mode switchdev' % HANDLE,
                      result.message)
        # Legacy mode has no representors: the check before allocation
        # refuses the VF, naming it.
        e = self.assertRaises(exception.OffloadNotReady,
                              checks.check_vf_ready, VF_ADDRESS,
                              self.netdevs, self.devlink)
        self.assertIn(VF_ADDRESS, e.message)

    def _restore_switchdev(self):
        switchdev_netdevs()

    def test_unknown_devlink_device(self):
        self.assertRaises(exception.DevlinkDeviceNotFound,
                          self.devlink.eswitch, 'netdevsim/netdevsim99')

    # ------------------------------------------------------ representors
    def test_representor_found_like_os_vif(self):
        from vif_plug_ovs import linux_net

        port = self.netdevs.locate_vf(VF_ADDRESS)
        result = checks.check_representor(port, self.netdevs)
        self.assertEqual(checks.Status.SUCCESS, result.status,
                         result.message)
        self.assertEqual(self.rep, result.detail)
        # os-vif's own walk from the uplink on, over the same real sysfs
        # (only the PF's PCI address is supplied).
        with mock.patch.object(linux_net, 'get_function_by_ifname',
                               return_value=(PF_ADDRESS, True)):
            self.assertEqual(self.rep, linux_net.get_representor_port(
                self.uplink, str(VF_INDEX)))
        self.assertEqual(self.rep, checks.check_vf_ready(
            VF_ADDRESS, self.netdevs, self.devlink))

    def test_representor_removed(self):
        # Moving the representor to another namespace removes it from the
        # host's view, as a udev rule or an unload would.
        run('ip', 'netns', 'add', 'elsewhere')
        self.addCleanup(run, 'ip', 'netns', 'del', 'elsewhere')
        run('ip', 'link', 'set', self.rep, 'netns', 'elsewhere')
        self.addCleanup(run, 'ip', '-n', 'elsewhere', 'link', 'set',
                        self.rep, 'netns', '1')
        port = self.netdevs.locate_vf(VF_ADDRESS)
        result = checks.check_representor(port, self.netdevs)
        self.assertEqual(checks.Status.FAILURE, result.status)
        self.assertIn('has no representor', result.message)
        e = self.assertRaises(exception.OffloadNotReady,
                              checks.check_vf_ready, VF_ADDRESS,
                              self.netdevs, self.devlink)
        self.assertIn(VF_ADDRESS, e.message)

    def test_hw_tc_offload_on_and_off(self):
        from pyroute2.ethtool import ioctl

        def set_tc(on):
            eth = ioctl.IoctlEthtool(self.rep)
            try:
                features = eth.get_features()
                features[netdev.HW_TC_OFFLOAD] = on
                eth.set_features(features)
            finally:
                eth.close()

        set_tc(True)
        self.assertTrue(self.netdevs.hw_tc_offload(self.rep))
        self.assertEqual(checks.Status.SUCCESS, checks.check_tc_offload(
            self.rep, self.netdevs, 'representor').status)
        set_tc(False)
        self.addCleanup(set_tc, True)
        self.assertFalse(self.netdevs.hw_tc_offload(self.rep))
        result = checks.check_tc_offload(self.rep, self.netdevs,
                                         'representor')
        self.assertEqual(checks.Status.WARNING, result.status)
        self.assertIn('ethtool -K %s hw-tc-offload on' % self.rep,
                      result.message)
        self.assertRaises(exception.NetdevError, self.netdevs.hw_tc_offload,
                          'nosuchdev0')

    # ------------------------------------------------------------ OVSDB
    def test_hw_offload_setting(self):
        self.vsctl('set', 'Open_vSwitch', '.', 'other_config:hw-offload=true')
        self.addCleanup(self.vsctl, 'remove', 'Open_vSwitch', '.',
                        'other_config', 'hw-offload')
        wait_for(lambda: checks.check_hw_offload(self.ovs).ok, 'hw-offload')
        self.vsctl('remove', 'Open_vSwitch', '.', 'other_config',
                   'hw-offload')
        wait_for(lambda: not checks.check_hw_offload(self.ovs).ok,
                 'hw-offload removed')
        result = checks.check_hw_offload(self.ovs)
        self.assertEqual(checks.Status.WARNING, result.status)
        self.assertIn('other_config:hw-offload=true', result.message)

    def test_integration_bridge_datapath(self):
        # No ovn- key on the bed's Open_vSwitch row: ML2/OVS.
        detected = mechanism.detect(self.ovs)
        self.assertIs(mechanism.Mechanism.OVS, detected.mechanism)
        self.assertEqual('br-int', detected.bridge)
        result = checks.check_integration_bridge(self.ovs, 'br-nope')
        self.assertEqual(checks.Status.FAILURE, result.status)
        self.assertIn('does not exist', result.message)
        self.vsctl('--may-exist', 'add-br', 'br-chk', '--', 'set', 'Bridge',
                   'br-chk', 'datapath_type=system')
        self.addCleanup(self.vsctl, '--if-exists', 'del-br', 'br-chk')
        wait_for(lambda: checks.check_integration_bridge(
            self.ovs, 'br-chk').ok, 'br-chk')
        self.vsctl('set', 'Bridge', 'br-chk', 'datapath_type=netdev')
        wait_for(lambda: not checks.check_integration_bridge(
            self.ovs, 'br-chk').ok, 'netdev datapath')
        result = checks.check_integration_bridge(self.ovs, 'br-chk')
        self.assertIn('datapath_type netdev', result.message)
        self.assertIn('vhostuser', result.message)

    # ------------------------------------------- os-vif plug and verify
    def _plug_with_os_vif(self, port_id, mac):
        plug_with_os_vif(self, port_id, mac, self.uplink)
        self.addCleanup(self.vsctl, '--if-exists', 'del-br', 'br-int')
        self.addCleanup(self.vsctl, '--if-exists', 'del-port', self.rep)

    def test_plugged_by_os_vif_then_broken(self):
        port_id, mac = str(uuid.uuid4()), 'fa:16:3e:00:00:01'
        self._plug_with_os_vif(port_id, mac)
        result = wait_for(
            lambda: (lambda r: r if r.ok else None)(checks.verify_plugged(
                self.ovs, port_id, mac, self.rep)), 'the plugged row')
        self.assertEqual(checks.Status.SUCCESS, result.status)
        self.assertEqual(checks.Status.SUCCESS,
                         checks.check_integration_bridge(self.ovs).status)
        # Another port's id and MAC: the agent would wire the wrong port.
        other = checks.verify_plugged(self.ovs, str(uuid.uuid4()),
                                      'fa:16:3e:00:00:02', self.rep)
        self.assertEqual(checks.Status.FAILURE, other.status)
        self.assertIn('iface-id', other.message)
        self.assertIn('attached-mac', other.message)
        # Unplugged: no row at all.
        self.vsctl('del-port', self.rep)
        gone = wait_for(lambda: (lambda r: r if not r.ok else None)(
            checks.verify_plugged(self.ovs, port_id, mac, self.rep)),
            'the row to go')
        self.assertIn('has no Interface row', gone.message)

    # ------------------------------------------------- ports and flows
    def test_status_ports_shows_flows_of_the_representor(self):
        """``ports`` with hw-offload on, a VXLAN port on br-tun, a flow.

        netdevsim offloads only BPF: the representor's flower flows show as
        ``dp:tc`` not in hardware (``offloaded`` "no"); the "offloaded:yes"
        form is covered by the unit tests' recorded sample.
        """
        from nova_vdpa.cmd import host as host_mod
        from nova_vdpa.cmd import status

        self.vsctl('set', 'Open_vSwitch', '.', 'other_config:hw-offload=true')
        self.addCleanup(self.vsctl, 'remove', 'Open_vSwitch', '.',
                        'other_config', 'hw-offload')
        port_id, mac = str(uuid.uuid4()), 'fa:16:3e:00:00:03'
        self._plug_with_os_vif(port_id, mac)
        self.vsctl('--may-exist', 'add-br', 'br-tun', '--', 'add-port',
                   'br-tun', 'vxlan-0a000002', '--', 'set', 'Interface',
                   'vxlan-0a000002', 'type=vxlan',
                   'options:remote_ip=10.0.0.2', 'options:local_ip=10.0.0.1')
        self.addCleanup(self.vsctl, '--if-exists', 'del-br', 'br-tun')
        found = flows_from_the_vm(self, 'inj', self.rep, mac)
        self.assertTrue(all(f.in_port == self.rep or f.touches(self.rep)
                            for f in found))
        self.assertEqual(set(), {f.dp for f in found} - {'tc', 'ovs'})
        # netdevsim holds no flower rule in hardware: never "offloaded".
        self.assertEqual({'no'}, {f.offloaded for f in found})

        conf = mock.Mock(ovsdb_connection=os.environ[
            'NOVA_VDPA_TESTBED_OVSDB'], ovs_rundir=None,
            integration_bridge='br-int', tunnel_bridge='br-tun')
        host = host_mod.Host(conf)
        host.netdevs = self.netdevs
        device = mock.Mock(mgmtdev='vdpasim_net')
        device.name = 'nvdpa-' + port_id
        alloc = mock.Mock()
        alloc.owned_devices.return_value = [device]
        alloc.vf_management_devices.return_value = {
            VF_ADDRESS: mock.Mock(handle='vdpasim_net')}
        host._allocator = alloc
        config = model.DeviceConfig(device.name, 1, mac, 1, 1500, None,
                                    None, None)
        # The vDPA device itself is the allocator's business (its own bed
        # tests); here only its name and MAC matter.
        with mock.patch.object(host, '_devices',
                               return_value=([], {device.name: config})):
            rows = host.ports()
        host.close()
        self.assertEqual(1, len(rows))
        row = rows[0]
        self.assertEqual(self.rep, row['representor'])
        self.assertIsInstance(row['ofport'], int)
        self.assertTrue(row['plugged'].startswith('Interface %s in br-int'
                                                  % self.rep), row['plugged'])
        self.assertEqual(['vxlan-0a000002'],
                         [t['name'] for t in row['tunnels']])
        self.assertEqual('10.0.0.2', row['tunnels'][0]['remote_ip'])
        self.assertTrue(row['flows'])
        self.assertTrue(all(f['dp'] in ('tc', 'ovs') for f in row['flows']))
        self.assertIsNotNone(status)


def flows_from_the_vm(test, prefix, rep, mac):
    """Send frames from ``mac`` into ``rep`` until it has datapath flows.

    Frames of the "VM": a veth pair ``<prefix>0``/``<prefix>1`` (removed
    at ``test``'s clean-up) whose far end tc mirred redirects into the
    representor, which has no receive path of its own. Returns the flows
    (also the test's ``flows`` detail).
    """
    inner, outer = prefix + '0', prefix + '1'
    run('ip', 'link', 'add', inner, 'type', 'veth', 'peer', outer)
    test.addCleanup(run, 'ip', 'link', 'del', inner)
    for dev in (inner, outer, rep):
        run('ip', 'link', 'set', dev, 'up')
    run('tc', 'qdisc', 'add', 'dev', outer, 'ingress')
    run('tc', 'filter', 'add', 'dev', outer, 'ingress', 'matchall',
        'action', 'mirred', 'ingress', 'redirect', 'dev', rep)
    ctl = flows.control_socket()

    def rep_flows():
        # Keep traffic coming until the datapath has a flow for it.
        send_frame(inner, mac)
        return flows.representor_flows(ctl, rep)

    found = wait_for(rep_flows, 'a datapath flow on %s' % rep, 90)
    test.addDetail('flows', content.text_content(
        '\n'.join(f.raw for f in found)))
    return found


def send_frame(ifname, src_mac):
    """One broadcast Ethernet frame from ``src_mac`` out of ``ifname``."""
    import socket

    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((ifname, 0))
        src = bytes.fromhex(src_mac.replace(':', ''))
        s.send(b'\xff' * 6 + src + b'\x88\xb5' + b'nova-vdpa' * 6)
    finally:
        s.close()


class TestStatusCheck(base.BedTestCase):
    """``nova-vdpa-status check`` end to end on a good bed, then a bad one.

    The allocator serves the made-up VF from vdpasim_net (its test-only
    ``simulated_vfs``); the PCI walk is supplied as in :class:`TestOffload`.
    """

    services = ('ovs', 'libvirt')

    def setUp(self):
        super().setUp()
        ensure_netdevsim()
        self.rep, self.uplink = switchdev_netdevs()

    def vsctl(self, *args):
        return run('ovs-vsctl', '--timeout=30', *args)

    def status(self, *argv):
        from nova_vdpa import allocator
        from nova_vdpa.cmd import host as host_mod
        from nova_vdpa.cmd import status

        def factory(conf):
            host = host_mod.Host(conf)
            host.netdevs = BedNetdevs(self.uplink)
            host._allocator = allocator.Allocator(
                management_devices=['vdpasim_net'],
                simulated_vfs={VF_ADDRESS: 'vdpasim_net'})
            return host

        # Not a detail named stdout: subunit-trace prints those on a pass.
        out = io.StringIO()
        with mock.patch('sys.stdout', out):
            code = status.main(
                ['--ovsdb-connection', os.environ['NOVA_VDPA_TESTBED_OVSDB'],
                 *argv], host_factory=factory)
        out.seek(0)
        text = out.read()
        self.addDetail('output', content.text_content(text))
        return code, text

    def test_good_host_then_legacy(self):
        from pyroute2.ethtool import ioctl

        self.vsctl('set', 'Open_vSwitch', '.', 'other_config:hw-offload=true')
        self.addCleanup(self.vsctl, 'remove', 'Open_vSwitch', '.',
                        'other_config', 'hw-offload')
        self.vsctl('--may-exist', 'add-br', 'br-int')
        self.addCleanup(self.vsctl, '--if-exists', 'del-br', 'br-int')
        for ifname in (self.uplink, self.rep):
            eth = ioctl.IoctlEthtool(ifname)
            try:
                features = eth.get_features()
                features[netdev.HW_TC_OFFLOAD] = True
                eth.set_features(features)
            finally:
                eth.close()

        code, text = self.status('check', '--format', 'json')
        results = {c['check']: c for c in json.loads(text)['checks']}
        # The bed imports the checkout's nova_vdpa, not a copy installed
        # beside Nova: the installation check says so, a warning where
        # the env has the package too (Debian 12's bed), a failure where
        # it has none (the Debian 13 root's venv, no shim for Nova).
        installation = results.pop('nova-vdpa installation')
        self.assertIn(installation['result'], (1, 2), text)
        self.assertIn('/', installation['details'])
        self.assertEqual({0}, {c['result'] for c in results.values()},
                         text)
        self.assertEqual(installation['result'], code)
        self.assertIn(self.rep, results['representors']['details'])

        set_mode('legacy')
        self.addCleanup(set_mode, 'switchdev')
        code, text = self.status('check')
        self.assertEqual(2, code)
        self.assertIn('Result: Failure', text)
        self.assertIn('eswitch mode legacy', text)

        code, text = self.status('ports')
        self.assertEqual(0, code)
        self.assertEqual('No vdpa port is allocated on this host.\n', text)

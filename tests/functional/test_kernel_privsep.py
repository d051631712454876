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

"""A real privsep daemon (privsep-helper, no sudo: the bed runs as root).

Proves the context's capability set is enough: the daemon runs with
CAP_NET_ADMIN alone and creates, binds (sysfs writes as uid 0, no
CAP_DAC_OVERRIDE) and deletes devices; and shows what it cannot do without
CAP_SYS_PTRACE: name a holder that has more capabilities than itself.
Also what the daemon refuses by its own configuration, whatever the
caller sends: a management device its ``management_devices`` leaves out
(an empty list allows none), and more devices of ours on a simulator than
``max_devices_per_simulator``.
"""

import os
import pathlib
import sys
import tempfile

import fixtures
from oslo_config import cfg

from nova_vdpa import conf as vdpa_conf
from nova_vdpa import exception
from nova_vdpa.kernel import netlink
import nova_vdpa.privsep
from nova_vdpa.privsep import vdpa as priv_vdpa
from tests.functional import base

REPO = pathlib.Path(__file__).resolve().parents[2]
CAP_NET_ADMIN = 12
# The entrypoints touch only devices named like nova-vdpa's own.
PRIV0 = priv_vdpa.device_name('00000000-0000-4000-8000-0000000000a0')
PRIV1 = priv_vdpa.device_name('00000000-0000-4000-8000-0000000000a1')
PRIV2 = priv_vdpa.device_name('00000000-0000-4000-8000-0000000000a2')


class PrivsepDaemonTestCase(base.BedTestCase):
    """A real daemon reading a file of the test's, started on first call."""

    #: the daemon's [nova_vdpa] section
    config = ('management_devices = vdpasim_net\n'
              'max_devices_per_simulator = 2\n')

    def setUp(self):
        super().setUp()
        ctx = nova_vdpa.privsep.vdpa_pctxt
        helper = os.path.join(os.path.dirname(sys.executable),
                              'privsep-helper')
        tmp = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, tmp)
        path = os.path.join(tmp, 'nova-vdpa.conf')
        with open(path, 'w') as f:
            f.write('[%s]\n%s' % (vdpa_conf.vdpa_group.name, self.config))
        self.addCleanup(os.unlink, path)
        # The venv holds an installed snapshot of nova_vdpa; the daemon
        # must import the checkout under test, as the test process does,
        # and reads the file, as the test process's own checks do.
        cfg.CONF.set_override(
            'helper_command', 'env PYTHONPATH=%s %s --config-file %s'
            % (REPO, helper, path), group=ctx.cfg_section)
        self.addCleanup(cfg.CONF.clear_override, 'helper_command',
                        group=ctx.cfg_section)
        conf = cfg.ConfigOpts()
        vdpa_conf.register_opts(conf)
        conf(args=[], default_config_files=[path], default_config_dirs=[])
        self.useFixture(fixtures.MonkeyPatch('nova_vdpa.privsep.vdpa._conf',
                                             conf))
        self.addCleanup(ctx.stop)
        self.client = netlink.VdpaClient()
        self.addCleanup(self.client.close)

    def _daemon_caps(self):
        """(CapEff, uid) of the running daemon, or None."""
        pid = base.privsep_daemon_pid()
        if pid is None:
            return None
        with open('/proc/%d/status' % pid) as f:
            status = dict(line.split(':', 1) for line in f if ':' in line)
        return int(status['CapEff'], 16), int(status['Uid'].split()[0])

    def _cleanup(self, name):
        try:
            self.client.delete_device(name)
        except exception.VdpaDeviceNotFound:
            pass


class TestPrivsepDaemon(PrivsepDaemonTestCase):

    def test_round_trip(self):
        made = priv_vdpa.create_bound_device(PRIV0, 'vdpasim_net',
                                             mac='02:00:00:00:01:01',
                                             mtu=1280)
        self.addCleanup(self._cleanup, PRIV0)
        cap_eff, uid = self._daemon_caps()
        self.assertEqual(1 << CAP_NET_ADMIN, cap_eff)
        self.assertEqual(0, uid)
        cfg_ = self.client.get_config(PRIV0)
        self.assertEqual(('02:00:00:00:01:01', 1280), (cfg_.mac, cfg_.mtu))

        node = priv_vdpa.bind_device(PRIV0)
        self.assertEqual(made.chardev, node)
        self.assertTrue(node.startswith('/dev/vhost-vdpa-'))
        self.assertEqual('vhost_vdpa', os.path.basename(
            os.readlink('/sys/bus/vdpa/devices/%s/driver' % PRIV0)))

        # Errors cross the daemon boundary typed.
        self.assertRaises(exception.VdpaDeviceExists,
                          priv_vdpa.create_bound_device, PRIV0,
                          'vdpasim_net')
        self.assertRaises(exception.VdpaAttributeNotSupported,
                          priv_vdpa.create_bound_device, PRIV1,
                          'vdpasim_net', max_vq_pairs=2)

        fd = os.open(node, os.O_RDWR)
        try:
            e = self.assertRaises(exception.VdpaDeviceInUse,
                                  priv_vdpa.delete_device, PRIV0,
                                  timeout=10)
            # This process has every capability, the daemon only
            # CAP_NET_ADMIN: without CAP_SYS_PTRACE the kernel hides our
            # file table from it, and the exclusive open alone proves the
            # holder.
            self.assertIn('pid unknown', str(e))
        finally:
            os.close(fd)
        priv_vdpa.delete_device(PRIV0, timeout=10)
        self.assertEqual([], [d.name for d in self.client.list_devices()])

    def test_simulator_takes_max_devices_per_simulator(self):
        # An operator's device is not ours and is not counted.
        self.run_cmd('vdpa', 'dev', 'add', 'name', 'opvdpa9', 'mgmtdev',
                     'vdpasim_net')
        self.addCleanup(self._cleanup, 'opvdpa9')
        for name in (PRIV0, PRIV1):
            self.addCleanup(self._cleanup, name)
            priv_vdpa.create_bound_device(name, 'vdpasim_net')
        self.addCleanup(self._cleanup, PRIV2)
        # Refused by the daemon itself, as a compromised caller reaches it,
        # before DEV_NEW: the kernel has two devices of ours still.
        e = self.assertRaises(exception.VdpaNoSpace,
                              priv_vdpa._create_bound_device,
                              PRIV2, 'vdpasim_net', None, None, None)
        self.assertIn('max_devices_per_simulator', str(e))
        self.assertEqual(sorted([PRIV0, PRIV1, 'opvdpa9']),
                         sorted(d.name for d in self.client.list_devices()))
        priv_vdpa.delete_device(PRIV1, timeout=10)
        priv_vdpa.create_bound_device(PRIV2, 'vdpasim_net')


class TestEmptyAllowList(PrivsepDaemonTestCase):
    """A daemon whose management_devices is empty makes nothing."""

    config = 'max_devices_per_simulator = 2\n'

    def test_nothing_is_made_bound_or_deleted(self):
        # The daemon's side, as a compromised caller reaches it (the
        # caller's side refuses the same before escalating).
        for call in (lambda: priv_vdpa.create_bound_device(PRIV0,
                                                           'vdpasim_net'),
                     lambda: priv_vdpa._create_bound_device(
                         PRIV0, 'vdpasim_net', None, None, None)):
            e = self.assertRaises(exception.VdpaDeviceNotOurs, call)
            self.assertIn('[nova_vdpa] management_devices is empty',
                          str(e))
        # Made behind its back: neither bound nor deleted.
        self.addCleanup(self._cleanup, PRIV1)
        self.client.create_device(PRIV1, 'vdpasim_net')
        for call in (lambda: priv_vdpa._bind_device(PRIV1),
                     lambda: priv_vdpa._delete_device(PRIV1, 5.0)):
            self.assertRaises(exception.VdpaDeviceNotOurs, call)
        self.assertEqual([PRIV1], [d.name
                                   for d in self.client.list_devices()])

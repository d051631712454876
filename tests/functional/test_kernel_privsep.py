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
"""

import os
import pathlib
import sys

from oslo_config import cfg

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


class TestPrivsepDaemon(base.BedTestCase):

    def setUp(self):
        super().setUp()
        ctx = nova_vdpa.privsep.vdpa_pctxt
        helper = os.path.join(os.path.dirname(sys.executable),
                              'privsep-helper')
        # The venv holds an installed snapshot of nova_vdpa; the daemon
        # must import the checkout under test, as the test process does.
        cfg.CONF.set_override(
            'helper_command', 'env PYTHONPATH=%s %s' % (REPO, helper),
            group=ctx.cfg_section)
        self.addCleanup(cfg.CONF.clear_override, 'helper_command',
                        group=ctx.cfg_section)
        self.addCleanup(ctx.stop)
        self.client = netlink.VdpaClient()
        self.addCleanup(self.client.close)

    def _daemon_caps(self):
        # The helper's child (the daemon) is the process whose cmdline
        # names our context and which is not the helper wrapper (env).
        for pid in os.listdir('/proc'):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    cmdline = f.read()
                with open('/proc/%s/status' % pid) as f:
                    status = dict(line.split(':', 1) for line in f
                                  if ':' in line)
            except OSError:
                continue
            if b'nova_vdpa.privsep.vdpa_pctxt' in cmdline:
                return (int(status['CapEff'], 16),
                        int(status['Uid'].split()[0]))
        return None

    def test_round_trip(self):
        priv_vdpa.create_device(PRIV0, 'vdpasim_net',
                                mac='02:00:00:00:01:01', mtu=1280)
        self.addCleanup(self._cleanup, PRIV0)
        cap_eff, uid = self._daemon_caps()
        self.assertEqual(1 << CAP_NET_ADMIN, cap_eff)
        self.assertEqual(0, uid)
        cfg_ = self.client.get_config(PRIV0)
        self.assertEqual(('02:00:00:00:01:01', 1280), (cfg_.mac, cfg_.mtu))

        node = priv_vdpa.bind_device(PRIV0)
        self.assertTrue(node.startswith('/dev/vhost-vdpa-'))
        self.assertEqual('vhost_vdpa', os.path.basename(
            os.readlink('/sys/bus/vdpa/devices/%s/driver' % PRIV0)))

        # Errors cross the daemon boundary typed.
        self.assertRaises(exception.VdpaDeviceExists,
                          priv_vdpa.create_device, PRIV0, 'vdpasim_net')
        self.assertRaises(exception.VdpaAttributeNotSupported,
                          priv_vdpa.create_device, PRIV1, 'vdpasim_net',
                          max_vq_pairs=2)

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

    def _cleanup(self, name):
        try:
            self.client.delete_device(name)
        except exception.VdpaDeviceNotFound:
            pass

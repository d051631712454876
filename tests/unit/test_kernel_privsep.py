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

"""The privsep entrypoints, run in-process against the fake kernel.

No test may start a privsep helper: PrivContext.start fails loudly here.
"""

import fixtures
from oslo_config import cfg

from nova_vdpa import exception
import nova_vdpa.privsep
from nova_vdpa.privsep import vdpa as priv_vdpa
from tests.unit import base

# The entrypoints touch only devices named like nova-vdpa's own.
VD0 = priv_vdpa.device_name('00000000-0000-4000-8000-000000000000')
VD1 = priv_vdpa.device_name('00000000-0000-4000-8000-000000000001')
X = priv_vdpa.device_name('00000000-0000-4000-8000-0000000000ff')


def _no_daemon(*args, **kwargs):
    raise AssertionError('unit tests must never start a privsep daemon')


class PrivsepTestCase(base.KernelTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_privsep.priv_context.PrivContext.start', _no_daemon))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.vdpa._client_factory', self.kernel.client))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.vdpa._sysfs_factory', self.kernel.sysfs))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.vdpa._conf', cfg.ConfigOpts()))
        ctx = nova_vdpa.privsep.vdpa_pctxt
        self.addCleanup(ctx.set_client_mode, ctx.client_mode)


class TestInProcess(PrivsepTestCase):

    def setUp(self):
        super().setUp()
        nova_vdpa.privsep.vdpa_pctxt.set_client_mode(False)

    def test_create_bind_delete(self):
        priv_vdpa.create_device(VD0, 'vdpasim_net',
                                mac='02:00:00:00:00:01', mtu=1500)
        node = priv_vdpa.bind_device(VD0)
        self.assertEqual('vhost_vdpa', self.sysfs.driver(VD0))
        self.assertEqual(self.sysfs.chardev(VD0), node)
        self.kernel.open_chardev(VD0, pid=55)
        self.assertRaises(exception.VdpaDeviceInUse,
                          priv_vdpa.delete_device, VD0, timeout=10)
        self.kernel.close_chardev(VD0)
        priv_vdpa.delete_device(VD0, timeout=10)
        self.assertEqual([], self.client.list_devices())

    def test_kernel_errors_are_typed(self):
        priv_vdpa.create_device(VD0, 'vdpasim_net')
        self.assertRaises(exception.VdpaDeviceExists,
                          priv_vdpa.create_device, VD0, 'vdpasim_net')
        self.assertRaises(exception.VdpaAttributeNotSupported,
                          priv_vdpa.create_device, VD1, 'vdpasim_net',
                          max_vq_pairs=2)

    def test_errors_survive_the_privsep_round_trip(self):
        # The daemon sends (class, args) and the client rebuilds
        # exc_type(*args): the message must survive.
        priv_vdpa.create_device(VD0, 'vdpasim_net')
        node = priv_vdpa.bind_device(VD0)
        self.kernel.open_chardev(VD0, pid=55)
        self.addCleanup(self.kernel.close_chardev, VD0)
        for error, call, needle in (
                (exception.VdpaManagementDeviceNotFound,
                 lambda: priv_vdpa.create_device(VD1, 'nope'), 'nope'),
                (exception.VdpaDeviceInUse,
                 lambda: priv_vdpa.delete_device(VD0, timeout=10), node)):
            e = self.assertRaises(error, call)
            again = type(e)(*e.args)
            self.assertEqual(str(e), str(again))
            self.assertIn(needle, str(again))


class TestChecksBeforeEscalation(PrivsepTestCase):
    """Client mode: a bad argument never reaches the (absent) daemon."""

    def test_bad_arguments_refused_unprivileged(self):
        nova_vdpa.privsep.vdpa_pctxt.set_client_mode(True)
        for call in (
                lambda: priv_vdpa.create_device('../x', 'vdpasim_net'),
                lambda: priv_vdpa.create_device(X, 'vdpasim_net', mtu=10),
                lambda: priv_vdpa.create_device(X, 'vdpasim_net',
                                                mac='zz'),
                lambda: priv_vdpa.create_device(X, 'vdpasim_net',
                                                max_vq_pairs=0),
                lambda: priv_vdpa.create_device(X + '\n', 'vdpasim_net'),
                lambda: priv_vdpa.create_device(
                    X, 'vdpasim_net', mac='02:00:00:00:00:01\n'),
                lambda: priv_vdpa.bind_device('a/b'),
                lambda: priv_vdpa.bind_device(''),
                lambda: priv_vdpa.delete_device('..', timeout=10),
                lambda: priv_vdpa.delete_device('a\0b', timeout=10),
                lambda: priv_vdpa.delete_device(X, timeout=0),
                lambda: priv_vdpa.delete_device(X, timeout=301),
                lambda: priv_vdpa.delete_device(X, timeout=True)):
            self.assertRaises(exception.VdpaInvalidArgument, call)
        e = self.assertRaises(exception.VdpaInvalidArgument,
                              priv_vdpa.delete_device, X, timeout=-1)
        self.assertIn('timeout', str(e))
        self.assertIn(X, str(e))

    def test_valid_call_would_escalate(self):
        nova_vdpa.privsep.vdpa_pctxt.set_client_mode(True)
        e = self.assertRaises(AssertionError, priv_vdpa.create_device,
                              X, 'vdpasim_net')
        self.assertIn('never start', str(e))

    def test_entrypoints_are_registered_with_the_context(self):
        ctx = nova_vdpa.privsep.vdpa_pctxt
        for f in (priv_vdpa._create_device, priv_vdpa._bind_device,
                  priv_vdpa._delete_device):
            self.assertTrue(ctx.is_entrypoint(f))
        # CAP_NET_ADMIN (12) and nothing else.
        self.assertEqual([12], list(ctx.conf.capabilities))

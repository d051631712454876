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

import dataclasses

import fixtures
from oslo_config import cfg

from nova_vdpa import conf as vdpa_conf
from nova_vdpa import exception
import nova_vdpa.privsep
from nova_vdpa.privsep import vdpa as priv_vdpa
from tests.unit import base
from tests.unit import fake_kernel

# The entrypoints touch only devices named like nova-vdpa's own.
VD0 = priv_vdpa.device_name('00000000-0000-4000-8000-000000000000')
VD1 = priv_vdpa.device_name('00000000-0000-4000-8000-000000000001')
X = priv_vdpa.device_name('00000000-0000-4000-8000-0000000000ff')
PCI_VF = '0000:08:00.2'


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
        conf = cfg.ConfigOpts()
        vdpa_conf.register_opts(conf)
        conf.set_override('management_devices', ['vdpasim_net'],
                          group=vdpa_conf.vdpa_group.name)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.vdpa._conf', conf))
        self.conf = conf
        ctx = nova_vdpa.privsep.vdpa_pctxt
        self.addCleanup(ctx.set_client_mode, ctx.client_mode)


class TestInProcess(PrivsepTestCase):

    def setUp(self):
        super().setUp()
        nova_vdpa.privsep.vdpa_pctxt.set_client_mode(False)

    def test_create_bind_delete(self):
        made = priv_vdpa.create_bound_device(VD0, 'vdpasim_net',
                                             mac='02:00:00:00:00:01',
                                             mtu=1500)
        self.assertEqual('vhost_vdpa', self.sysfs.driver(VD0))
        self.assertEqual(self.sysfs.chardev(VD0), made.chardev)
        self.assertEqual(('02:00:00:00:00:01', 1500),
                         (made.config.mac, made.config.mtu))
        node = priv_vdpa.bind_device(VD0)
        self.assertEqual(made.chardev, node)
        self.kernel.open_chardev(VD0, pid=55)
        self.assertRaises(exception.VdpaDeviceInUse,
                          priv_vdpa.delete_device, VD0, timeout=10)
        self.kernel.close_chardev(VD0)
        priv_vdpa.delete_device(VD0, timeout=10)
        self.assertEqual([], self.client.list_devices())

    def test_kernel_errors_are_typed(self):
        priv_vdpa.create_bound_device(VD0, 'vdpasim_net')
        self.assertRaises(exception.VdpaDeviceExists,
                          priv_vdpa.create_bound_device, VD0, 'vdpasim_net')
        self.assertRaises(exception.VdpaAttributeNotSupported,
                          priv_vdpa.create_bound_device, VD1, 'vdpasim_net',
                          max_vq_pairs=2)

    def test_errors_survive_the_privsep_round_trip(self):
        # The daemon sends (class, args) and the client rebuilds
        # exc_type(*args): the message must survive.
        node = priv_vdpa.create_bound_device(VD0, 'vdpasim_net').chardev
        self.kernel.open_chardev(VD0, pid=55)
        self.addCleanup(self.kernel.close_chardev, VD0)
        self.conf.set_override('management_devices', ['vdpasim_net', 'nope'],
                               group=vdpa_conf.vdpa_group.name)
        for error, call, needle in (
                (exception.VdpaManagementDeviceNotFound,
                 lambda: priv_vdpa.create_bound_device(VD1, 'nope'),
                 'nope'),
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
                lambda: priv_vdpa.create_bound_device('../x', 'vdpasim_net'),
                lambda: priv_vdpa.create_bound_device(X, 'vdpasim_net',
                                                      mtu=10),
                lambda: priv_vdpa.create_bound_device(X, 'vdpasim_net',
                                                      mac='zz'),
                lambda: priv_vdpa.create_bound_device(X, 'vdpasim_net',
                                                      max_vq_pairs=0),
                lambda: priv_vdpa.create_bound_device(X + '\n', 'vdpasim_net'),
                lambda: priv_vdpa.create_bound_device(
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
        e = self.assertRaises(AssertionError, priv_vdpa.create_bound_device,
                              X, 'vdpasim_net')
        self.assertIn('never start', str(e))

    def test_entrypoints_are_registered_with_the_context(self):
        ctx = nova_vdpa.privsep.vdpa_pctxt
        for f in (priv_vdpa._create_bound_device, priv_vdpa._bind_device,
                  priv_vdpa._delete_device):
            self.assertTrue(ctx.is_entrypoint(f))
        # CAP_NET_ADMIN (12) and nothing else.
        self.assertEqual([12], list(ctx.conf.capabilities))


class TestDaemonPolicy(PrivsepTestCase):
    """What the daemon refuses whatever its caller sends (issue 19)."""

    mgmtdevs = [fake_kernel.vdpasim_net(),
                # A VF whose driver would take more than one device: the
                # daemon's own rule still allows one of ours.
                dataclasses.replace(fake_kernel.mlx5_vf(PCI_VF),
                                    max_devices=None)]

    def setUp(self):
        super().setUp()
        nova_vdpa.privsep.vdpa_pctxt.set_client_mode(False)

    def names(self):
        return sorted(d.name for d in self.client.list_devices())

    def test_empty_management_devices_allow_none(self):
        self.conf.set_override('management_devices', [],
                               group=vdpa_conf.vdpa_group.name)
        self.client.create_device(VD1, 'vdpasim_net')
        driver = self.sysfs.driver(VD1)
        for call in (
                lambda: priv_vdpa.create_bound_device(VD0, 'vdpasim_net'),
                # The daemon's side, as a compromised caller reaches it.
                lambda: priv_vdpa._create_bound_device(
                    VD0, 'vdpasim_net', None, None, None),
                lambda: priv_vdpa._bind_device(VD1),
                lambda: priv_vdpa._delete_device(VD1, 5.0)):
            e = self.assertRaises(exception.VdpaDeviceNotOurs, call)
            self.assertIn('[nova_vdpa] management_devices is empty',
                          str(e))
        self.assertEqual([VD1], self.names())
        self.assertEqual(driver, self.sysfs.driver(VD1))

    def test_a_callers_empty_list_narrows_to_none(self):
        priv_vdpa.create_bound_device(VD0, 'vdpasim_net')
        e = self.assertRaises(exception.VdpaDeviceNotOurs,
                              priv_vdpa.delete_device, VD0, timeout=10,
                              management_devices=[])
        self.assertIn('management_devices', str(e))
        self.assertEqual([VD0], self.names())
        priv_vdpa.delete_device(VD0, timeout=10)
        self.assertEqual([], self.names())

    def test_simulator_takes_max_devices_per_simulator(self):
        self.conf.set_override('max_devices_per_simulator', 2,
                               group=vdpa_conf.vdpa_group.name)
        # An operator's device is not ours and is not counted.
        self.iproute2_add('vdpa0')
        priv_vdpa.create_bound_device(VD0, 'vdpasim_net')
        priv_vdpa.create_bound_device(VD1, 'vdpasim_net')
        for call in (
                lambda: priv_vdpa.create_bound_device(X, 'vdpasim_net'),
                lambda: priv_vdpa._create_bound_device(
                    X, 'vdpasim_net', None, None, None)):
            e = self.assertRaises(exception.VdpaNoSpace, call)
            self.assertIn('max_devices_per_simulator', str(e))
            self.assertIn('2 device(s) of nova-vdpa', str(e))
        # The device's own name is not counted: the kernel's EEXIST.
        self.assertRaises(exception.VdpaDeviceExists,
                          priv_vdpa.create_bound_device, VD0, 'vdpasim_net')
        self.assertEqual(sorted([VD0, VD1, 'vdpa0']), self.names())
        priv_vdpa.delete_device(VD1, timeout=10)
        priv_vdpa.create_bound_device(X, 'vdpasim_net')
        self.assertEqual(sorted([VD0, X, 'vdpa0']), self.names())

    def test_one_device_of_ours_per_pci_management_device(self):
        self.conf.set_override('management_devices',
                               ['vdpasim_net', 'pci/' + PCI_VF],
                               group=vdpa_conf.vdpa_group.name)
        priv_vdpa.create_bound_device(VD0, 'pci/' + PCI_VF)
        e = self.assertRaises(exception.VdpaNoSpace,
                              priv_vdpa._create_bound_device,
                              VD1, 'pci/' + PCI_VF, None, None, None)
        self.assertIn('one per VF or SF', str(e))
        self.assertEqual([VD0], self.names())
        # No bus: the simulator's limit, not the VF's.
        priv_vdpa.create_bound_device(VD1, 'vdpasim_net')

    def test_refusals_escape_what_the_caller_sent(self):
        forged = 'vd0\nERROR nova forged \x1b[2K'
        for call in (lambda: priv_vdpa._bind_device(forged),
                     lambda: priv_vdpa._delete_device(forged, 5.0)):
            e = self.assertRaises(exception.VdpaDeviceNotOurs, call)
            self.assertNotIn('\n', str(e))
            self.assertNotIn('\x1b', str(e))
            self.assertIn('vd0\\nERROR nova forged \\x1b[2K', str(e))
            # Rebuilt on the caller's side, as privsep does.
            self.assertEqual(str(e), str(type(e)(*e.args)))


class TestOnlyWhatIsUsedIsExported(base.TestCase):

    def test_no_raw_creation_entrypoint(self):
        # A creation is always bound and read back: no entrypoint takes a
        # feature mask or leaves a device on autoprobe's driver.
        for name in ('create_device', '_create_device'):
            self.assertFalse(hasattr(priv_vdpa, name), name)
        entrypoints = sorted(
            name for name, f in vars(priv_vdpa).items()
            if callable(f) and nova_vdpa.privsep.vdpa_pctxt.is_entrypoint(f))
        self.assertEqual(['_bind_device', '_create_bound_device',
                          '_delete_device'], entrypoints)

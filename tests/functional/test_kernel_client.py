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

"""nova_vdpa.kernel against the real 6.12 kernel, compared with iproute2.

Each rule the unit tests' fake kernel enforces is checked here for real:
errnos, max_vqp refused by vdpasim_net, bus-less handles, autoprobe order,
binding, exclusive chardev open, blocking deletion, the absent family.
(ENOSPC, one device per mlx5 VF, needs mlx5 hardware the bed lacks.)
"""

import errno
import os
import pathlib
import subprocess
import sys
import threading
import time

from nova_vdpa import exception
from nova_vdpa.kernel import lifecycle
from nova_vdpa.kernel import model
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs
from nova_vdpa.kernel import vhost
from tests.functional import base
from tests.unit import fake_kernel

SIM = 'vdpasim_net'
REPO = str(pathlib.Path(__file__).resolve().parents[2])
MODULES = ['vdpa', 'virtio_vdpa', 'vhost_vdpa', 'vdpa_sim', 'vdpa_sim_net']


def mgmtdev_json(m):
    """Our ManagementDevice the way ``vdpa -j mgmtdev show`` prints it."""
    out = {'supported_classes': m.supported_classes}
    if m.max_supported_vqs is not None:
        out['max_supported_vqs'] = m.max_supported_vqs
    if m.supported_features is not None:
        out['dev_features'] = m.supported_feature_names
    return out


def dev_json(d):
    return {'type': d.type, 'mgmtdev': d.mgmtdev, 'vendor_id': d.vendor_id,
            'max_vqs': d.max_vqs, 'max_vq_size': d.max_vq_size}


def config_json(c):
    out = {'mac': c.mac, 'link ': 'up' if c.link_up else 'down',
           'link_announce ': c.link_announce}
    if c.max_vq_pairs is not None:
        out['max_vq_pairs'] = c.max_vq_pairs
    out['mtu'] = c.mtu
    if c.negotiated_features is not None:
        out['negotiated_features'] = c.negotiated_feature_names
    return out


class KernelTestCase(base.BedTestCase):

    def setUp(self):
        super().setUp()
        self.client = netlink.VdpaClient()
        self.addCleanup(self.client.close)
        self.sysfs = sysfs.VdpaSysfs()
        self.addCleanup(self._delete_all)

    def _delete_all(self):
        for d in self.client.list_devices():
            self.client.delete_device(d.name)

    def create(self, name, **kw):
        self.client.create_device(name, SIM, **kw)


class TestParity(KernelTestCase):

    def test_mgmtdev_show(self):
        ours = {m.handle: mgmtdev_json(m)
                for m in self.client.list_management_devices()}
        self.assertEqual(self.vdpa_json('mgmtdev', 'show')['mgmtdev'], ours)
        self.assertEqual(mgmtdev_json(self.client.get_management_device(
            SIM)), ours[SIM])

    def test_64_devices_dev_and_config_show(self):
        for i in range(64):
            self.create('par%d' % i, mac='02:00:00:00:%02x:%02x' % (i, i),
                        mtu=1000 + 100 * i)
            if i % 2:
                # Half on vhost_vdpa: no driver negotiated their features.
                self.sysfs.bind('par%d' % i)
        devs = {d.name: dev_json(d) for d in self.client.list_devices()}
        self.assertEqual(64, len(devs))
        self.assertEqual(self.vdpa_json('dev', 'show')['dev'], devs)
        configs = {c.name: config_json(c)
                   for c in self.client.list_configs()}
        self.assertEqual(self.vdpa_json('dev', 'config', 'show')['config'],
                         configs)
        for name in ('par0', 'par1', 'par63'):
            self.assertEqual(devs[name],
                             dev_json(self.client.get_device(name)))
            self.assertEqual(configs[name],
                             config_json(self.client.get_config(name)))
            self.assertEqual(self.vdpa_json('dev', 'config', 'show',
                                            name)['config'][name],
                             configs[name])
        cfg = self.client.get_config('par63')
        self.assertEqual(('02:00:00:00:3f:3f', 7300),
                         (cfg.mac, cfg.mtu))
        self.assertIsNone(cfg.negotiated_features)
        self.assertIn('MAC', cfg.device_feature_names)
        self.assertIsNotNone(self.client.get_config('par0')
                             .negotiated_features)


class TestErrors(KernelTestCase):

    def test_eexist(self):
        self.create('err0')
        e = self.assertRaises(exception.VdpaDeviceExists, self.create,
                              'err0')
        self.assertIn('err0', str(e))
        self.assertIn(SIM, str(e))

    def test_enodev(self):
        e = self.assertRaises(exception.VdpaManagementDeviceNotFound,
                              self.client.create_device, 'err0', 'nope')
        self.assertIn('nope', str(e))
        # A handle with a bus never matches a bus-less management device.
        self.assertRaises(exception.VdpaManagementDeviceNotFound,
                          self.client.get_management_device, 'pci/' + SIM)
        for call in (self.client.get_device, self.client.get_config,
                     self.client.delete_device):
            self.assertRaises(exception.VdpaDeviceNotFound, call, 'gone')

    def test_eopnotsupp_max_vqp_on_vdpasim_net(self):
        e = self.assertRaises(exception.VdpaAttributeNotSupported,
                              self.create, 'err0', max_vq_pairs=2)
        self.assertIn('VDPA_ATTR_DEV_NET_CFG_MAX_VQP', str(e))
        self.assertIn('not supported', str(e))  # the kernel's extack
        self.assertEqual([], self.client.list_devices())

    def test_vendor_stats_need_negotiated_features(self):
        self.create('err0')
        stats = self.client.get_vendor_stats('err0', 0)
        self.assertEqual(['rx packets', 'rx bytes', 'rx errors',
                          'rx overruns', 'rx drops'],
                         [n for n, _ in stats.stats])
        self.assertEqual('tx packets',
                         self.client.get_vendor_stats('err0', 1).stats[0][0])
        self.sysfs.bind('err0')
        e = self.assertRaises(exception.VdpaKernelError,
                              self.client.get_vendor_stats, 'err0', 0)
        self.assertIn('errno 11', str(e))

    def test_kernel_policy_errors_bypassing_our_checks(self):
        ctx = dict(device='raw0', mgmtdev=SIM, attribute='raw')
        base_attrs = [('VDPA_ATTR_DEV_NAME', 'raw0'),
                      ('VDPA_ATTR_MGMTDEV_DEV_NAME', SIM)]

        def send(*extra):
            return self.client._request(netlink.VDPA_CMD_DEV_NEW,
                                        base_attrs + list(extra), False, ctx)
        e = self.assertRaises(exception.VdpaInvalidRequest, send,
                              ('VDPA_ATTR_DEV_NET_CFG_MTU', 60))
        self.assertIn('errno %d' % errno.ERANGE, str(e))
        self.assertIn('out of range', str(e))  # the kernel's extack
        e = self.assertRaises(exception.VdpaInvalidRequest, send,
                              ('VDPA_ATTR_DEV_NET_CFG_MAX_VQP', 0))
        self.assertIn('errno %d' % errno.EINVAL, str(e))
        # Provisioned features without F_MAC while a MAC is given.
        self.assertRaises(exception.VdpaInvalidRequest, send,
                          ('VDPA_ATTR_DEV_NET_CFG_MACADDR',
                           '02:00:00:00:00:01'),
                          ('VDPA_ATTR_DEV_FEATURES', 1 << 32))
        # As tests/unit/fake_kernel.py: F_MTU is checked only among given
        # features; a feature the simulator lacks is EINVAL from its
        # dev_add.
        supported = self.client.get_management_device(SIM).supported_features
        e = self.assertRaises(exception.VdpaInvalidRequest, send,
                              ('VDPA_ATTR_DEV_NET_CFG_MTU', 1400),
                              ('VDPA_ATTR_DEV_FEATURES',
                               supported & ~model.F_MTU))
        self.assertIn('Missing features 0x8', str(e))
        self.assertRaises(exception.VdpaInvalidRequest, send,
                          ('VDPA_ATTR_DEV_FEATURES', 1 << 60))
        self.assertEqual([], self.client.list_devices())
        send(('VDPA_ATTR_DEV_NET_CFG_MTU', 1400))
        self.assertEqual(1400, self.client.get_config('raw0').mtu)
        self.client.delete_device('raw0')
        self.assertEqual([], self.client.list_devices())

    def test_eperm_without_cap_net_admin(self):
        self.create('err0')
        self.sysfs.bind('err0')
        node = self.sysfs.chardev('err0')
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: become nobody, which clears every capability
            result = []
            try:
                os.close(read)
                os.setgid(65534)
                os.setuid(65534)
                c = netlink.VdpaClient()
                result.append(str(len(c.list_devices())))
                for call in (lambda: c.create_device('err1', SIM),
                             lambda: c.delete_device('err0'),
                             # the node is root's, 0600
                             lambda: sysfs.VdpaSysfs().is_open(node,
                                                               'err0')):
                    try:
                        call()
                        result.append('no-error')
                    except exception.NovaVdpaException as e:
                        named = 'err0' in str(e) or 'err1' in str(e)
                        result.append(type(e).__name__ + ('' if named else
                                                          '(unnamed)'))
            except BaseException as e:
                result.append('crash:%r' % e)
            finally:
                os.write(write, ','.join(result).encode())
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as f:
            got = f.read()
        os.waitpid(pid, 0)
        self.assertEqual('1,VdpaPermissionDenied,VdpaPermissionDenied,'
                         'VdpaSysfsError', got)
        self.assertEqual(['err0'],
                         [d.name for d in self.client.list_devices()])


class TestBinding(KernelTestCase):

    def test_100_devices_end_on_vhost_vdpa(self):
        with open('/proc/modules') as f:
            loaded = [line.split()[0] for line in f]
        self.assertIn('virtio_vdpa', loaded)
        self.assertIn('vhost_vdpa', loaded)
        nodes = set()
        for i in range(100):
            name = 'bind%d' % i
            nodes.add(lifecycle.create_device(self.client, self.sysfs, name,
                                              SIM))
        for i in range(100):
            self.assertEqual('vhost_vdpa', self.sysfs.driver('bind%d' % i))
        self.assertEqual(100, len(nodes))
        for node in nodes:
            os.close(os.open(node, os.O_RDWR))

    def test_autoprobe_picks_virtio_first(self):
        self.create('bind0')
        self.assertEqual('virtio_vdpa', self.sysfs.driver('bind0'))
        self.sysfs.bind('bind0', 'vhost_vdpa')
        self.sysfs.bind('bind0', 'virtio_vdpa')
        self.assertEqual('virtio_vdpa', self.sysfs.driver('bind0'))
        self.assertRaises(exception.VdpaChardevNotFound, self.sysfs.chardev,
                          'bind0')
        self.assertIsNone(self.sysfs.parent('bind0'))


class TestInUse(KernelTestCase):

    def setUp(self):
        super().setUp()
        self.node = lifecycle.create_device(self.client, self.sysfs, 'use0',
                                            SIM)

    def hold(self, node):
        """Open ``node``; return a release() that closes it once.

        Also registered as a cleanup, so a failing test never leaves the
        kernel blocked on a deletion.
        """
        held = [os.open(node, os.O_RDWR)]

        def release():
            if held:
                os.close(held.pop())
        self.addCleanup(release)
        return release

    def test_refused_promptly_then_deleted(self):
        close = self.hold(self.node)
        # vhost-vdpa admits one opener.
        e = self.assertRaises(OSError, os.open, self.node, os.O_RDWR)
        self.assertEqual(errno.EBUSY, e.errno)
        self.assertTrue(self.sysfs.is_open(self.node))
        self.assertEqual([os.getpid()],
                         [h.pid for h in self.sysfs.holders(self.node)])
        t0 = time.monotonic()
        e = self.assertRaises(exception.VdpaDeviceInUse,
                              lifecycle.delete_device, self.sysfs, 'use0',
                              timeout=10)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn('pid %d' % os.getpid(), str(e))
        self.assertIn('python', str(e))
        self.assertIn(SIM, str(e))
        self.assertIn('its character device %s is held' % self.node, str(e))
        self.assertNotIn('attribute', str(e))
        close()
        lifecycle.delete_device(self.sysfs, 'use0', timeout=10)
        self.assertEqual([], self.client.list_devices())
        self.assertFalse(os.path.exists(self.node))

    def test_open_after_the_check_times_out_then_completes(self):
        releases = []
        hold = self.hold

        class Racy(sysfs.VdpaSysfs):
            def is_open(self, chardev, name='-'):
                busy = super().is_open(chardev, name)
                releases.append(hold(chardev))
                return busy

        t0 = time.monotonic()
        self.assertRaises(exception.VdpaDeleteTimeout,
                          lifecycle.delete_device, Racy(), 'use0',
                          timeout=1.0)
        self.assertLess(time.monotonic() - t0, 5)
        # The kernel blocked DEV_DEL; closing lets it finish.
        releases[0]()
        deadline = time.monotonic() + 30
        while (os.path.exists('/sys/bus/vdpa/devices/use0')
               and time.monotonic() < deadline):
            time.sleep(0.1)
        self.assertFalse(os.path.exists('/sys/bus/vdpa/devices/use0'))
        # The worker is free again.
        self.create('use1')
        lifecycle.delete_device(self.sysfs, 'use1', timeout=10)

    def test_stuck_deletion_holds_its_process_until_the_holder_closes(self):
        # What the fake kernel cannot show: DEV_DEL waits uninterruptibly
        # (vhost_vdpa_remove), so a process that gave up on a deletion
        # cannot end before the holder closes the chardev, whatever Python
        # does with the deleting thread at exit.
        child = subprocess.Popen(
            [sys.executable, '-c', _RACY_DELETE, 'use0'],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
        self.addCleanup(child.stderr.close)
        self.addCleanup(child.stdout.close)
        self.addCleanup(child.stdin.close)
        self.addCleanup(child.kill)
        self.assertEqual('checked', child.stdout.readline().strip())
        release = self.hold(self.node)
        child.stdin.write('\n')
        child.stdin.flush()
        self.assertEqual('timed out', child.stdout.readline().strip())
        self.assertRaises(subprocess.TimeoutExpired, child.wait, timeout=3)
        wchans = []
        for tid in os.listdir('/proc/%d/task' % child.pid):
            with open('/proc/%d/task/%s/wchan' % (child.pid, tid)) as f:
                wchans.append(f.read())
        self.assertIn('vhost_vdpa_remove', wchans)
        release()
        self.assertEqual(0, child.wait(timeout=30))
        self.assertEqual([], self.client.list_devices())
        # The process said once, in its log, why its calls fail for now.
        self.assertEqual(
            ['WARNING nova_vdpa.kernel.worker A vdpa kernel call (delete) '
             'missed its 1 s deadline'],
            [line.partition(' and ')[0]
             for line in child.stderr.read().splitlines()])


class TestHeldDeviceIsNeverUnbound(KernelTestCase):
    """Re-binding a held device would block in vhost_vdpa's remove."""

    def setUp(self):
        super().setUp()
        self.node = lifecycle.create_device(self.client, self.sysfs, 'reb0',
                                            SIM)

    def hold(self):
        fd = os.open(self.node, os.O_RDWR)
        held = [fd]

        def release():
            if held:
                os.close(held.pop())
        self.addCleanup(release)
        return release

    def override(self):
        with open('/sys/bus/vdpa/devices/reb0/driver_override') as f:
            return f.read().strip()

    def test_rebind_to_virtio_refused_promptly_while_held(self):
        release = self.hold()
        t0 = time.monotonic()
        e = self.assertRaises(exception.VdpaDeviceInUse, self.sysfs.bind,
                              'reb0', sysfs.VIRTIO_VDPA)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn('refusing to rebind to virtio_vdpa it', str(e))
        self.assertIn(self.node, str(e))
        self.assertIn('pid %d' % os.getpid(), str(e))
        # Nothing was written.
        self.assertEqual(sysfs.VHOST_VDPA, self.sysfs.driver('reb0'))
        self.assertEqual(sysfs.VHOST_VDPA, self.override())
        release()
        self.sysfs.bind('reb0', sysfs.VIRTIO_VDPA)
        self.assertEqual(sysfs.VIRTIO_VDPA, self.sysfs.driver('reb0'))

    def test_open_after_the_check_times_out_then_unbinds(self):
        releases = []
        hold = self.hold

        class Racy(sysfs.VdpaSysfs):
            def is_open(self, chardev, name='-'):
                busy = super().is_open(chardev, name)
                releases.append(hold())
                return busy

        t0 = time.monotonic()
        e = self.assertRaises(exception.VdpaUnbindTimeout, Racy().bind,
                              'reb0', sysfs.VIRTIO_VDPA, timeout=1.0)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn('reb0', str(e))
        # The kernel dropped the driver link and the chardev at once;
        # vhost_vdpa's remove waits for the holder (the fake's rule): the
        # device looks unbound meanwhile.
        self.assertIsNone(self.sysfs.driver('reb0'))
        self.assertFalse(os.path.exists(self.node))
        self.assertEqual([], [c for c in os.listdir(
            '/sys/bus/vdpa/devices/reb0') if c.startswith('vhost-vdpa-')])
        releases[0]()
        # That remove ends after the holder has gone; until then the kernel
        # skips the device on drivers_probe (it still has a driver), so the
        # bind probes again until the remove has ended.
        self.sysfs.bind('reb0', sysfs.VHOST_VDPA)
        self.assertEqual(sysfs.VHOST_VDPA, self.sysfs.driver('reb0'))


class TestHolderCommandLine(KernelTestCase):

    def test_long_command_line_cut_at_a_word_boundary(self):
        node = lifecycle.create_device(self.client, self.sysfs, 'cmd0', SIM)
        words = ['-device', 'virtio-net-pci,netdev=hostnet0'] * 20
        holder = subprocess.Popen(
            ['bash', '-c', 'exec 3<>"$0"; echo open; read x', node] + words,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(holder.wait, 10)
        self.addCleanup(holder.stdin.close)
        self.addCleanup(holder.stdout.close)
        self.assertEqual('open', holder.stdout.readline().strip())
        e = self.assertRaises(exception.VdpaDeviceInUse,
                              lifecycle.delete_device, self.sysfs, 'cmd0',
                              timeout=10)
        [held] = self.sysfs.holders(node, 'cmd0')
        self.assertEqual(holder.pid, held.pid)
        self.assertLessEqual(len(held.cmdline), sysfs.CMDLINE_MAX)
        self.assertTrue(held.cmdline.endswith('...'))
        full = ' '.join(['bash', '-c', 'exec 3<>"$0"; echo open; read x',
                         node] + words)
        cut = held.cmdline[:-3]
        self.assertTrue(full.startswith(cut))
        self.assertEqual(' ', full[len(cut)])  # a word boundary
        self.assertIn('pid %d (%s)' % (holder.pid, held.cmdline), str(e))


class TestDevicesOtherToolsMade(KernelTestCase):
    """Names iproute2 and the kernel accept, which we never create."""

    NAMES = ('a.b', 'x:y', 'p@q', 'n' * 100)

    def iproute2_add(self, name):
        self.run_cmd('vdpa', 'dev', 'add', 'name', name, 'mgmtdev', SIM)

    def raw_add(self, name):
        list(self.client._request(
            netlink.VDPA_CMD_DEV_NEW,
            [('VDPA_ATTR_DEV_NAME', name),
             ('VDPA_ATTR_MGMTDEV_DEV_NAME', SIM)], False,
            dict(device=name, mgmtdev=SIM, attribute='-')))

    def test_our_creation_refuses_them_and_trailing_newlines(self):
        for name in self.NAMES + ('abc\n', 'vd0 '):
            self.assertRaises(exception.VdpaInvalidArgument, self.create,
                              name)
        self.assertRaises(exception.VdpaInvalidArgument, self.create,
                          'mac0', mac='02:00:00:00:00:01\n')
        self.assertEqual([], self.client.list_devices())

    def test_read_bind_check_and_delete(self):
        for name in self.NAMES:
            self.iproute2_add(name)
        shown = self.vdpa_json('dev', 'show', 'a.b')['dev']['a.b']
        self.assertEqual(shown, dev_json(self.client.get_device('a.b')))
        for name in self.NAMES:
            self.assertEqual(name, self.client.get_device(name).name)
            self.assertEqual(name, self.client.get_config(name).name)
            self.sysfs.bind(name)
            node = self.sysfs.chardev(name)
            fd = os.open(node, os.O_RDWR)
            try:
                e = self.assertRaises(exception.VdpaDeviceInUse,
                                      lifecycle.delete_device, self.sysfs,
                                      name, timeout=10)
                self.assertIn(node, str(e))
            finally:
                os.close(fd)
            lifecycle.delete_device(self.sysfs, name, timeout=10)
        self.assertEqual([], self.client.list_devices())

    def test_trailing_newline_twins(self):
        # The kernel's by-name sysfs writes ignore one trailing newline
        # (sysfs_streq): 'tw\n' written to unbind unbinds 'tw'.
        self.iproute2_add('tw')
        self.assertEqual(sysfs.VIRTIO_VDPA, self.sysfs.driver('tw'))
        self.sysfs._write('/sys/bus/vdpa/drivers/virtio_vdpa/unbind',
                          'tw\n')
        self.assertIsNone(self.sysfs.driver('tw'))
        # With both on the bus, we refuse to act on either by name.
        self.raw_add('tw\n')
        for name in ('tw', 'tw\n'):
            e = self.assertRaises(exception.VdpaBindError, self.sysfs.bind,
                                  name)
            self.assertIn('trailing newline', str(e))
        lifecycle.delete_device(self.sysfs, 'tw', timeout=10)
        self.sysfs.bind('tw\n')
        self.assertEqual(sysfs.VHOST_VDPA, self.sysfs.driver('tw\n'))
        lifecycle.delete_device(self.sysfs, 'tw\n', timeout=10)
        self.assertEqual([], self.client.list_devices())


# Run by test_stuck_deletion_holds_its_process_until_the_holder_closes: a
# deletion whose chardev the parent opens right after the in-use check.
_RACY_DELETE = """
import logging
import sys
from nova_vdpa import exception
from nova_vdpa.kernel import lifecycle, sysfs

class Racy(sysfs.VdpaSysfs):
    def is_open(self, chardev, name='-'):
        busy = super().is_open(chardev, name)
        print('checked', flush=True)
        sys.stdin.readline()
        return busy

logging.basicConfig(format='%(levelname)s %(name)s %(message)s')
try:
    lifecycle.delete_device(Racy(), sys.argv[1], timeout=1)
except exception.VdpaDeleteTimeout:
    print('timed out', flush=True)
"""


class TestFamilyMissing(base.BedTestCase):

    def _modprobe(self, *argv):
        subprocess.run(['modprobe'] + list(argv), check=True, timeout=120)

    def test_not_loaded_then_reloaded(self):
        client = netlink.VdpaClient()
        self.addCleanup(client.close)
        for d in client.list_devices():
            client.delete_device(d.name)
        family_id = client._sock.prid
        self._modprobe('-r', 'vdpa_sim_net', 'vdpa_sim', 'vhost_vdpa',
                       'virtio_vdpa', 'vdpa')
        try:
            e = self.assertRaises(exception.VdpaNotLoaded,
                                  netlink.VdpaClient)
            self.assertIn('not loaded', str(e))
            # A client bound before the unload says the same.
            self.assertRaises(exception.VdpaNotLoaded, client.list_devices)
            # So do deletion and sysfs (no /sys/bus/vdpa), naming the
            # device.
            for call in (
                    # (a generous deadline: after the unload the worker
                    # binds its socket again, slow under TCG)
                    lambda: lifecycle.delete_device(sysfs.VdpaSysfs(),
                                                    'fam0', timeout=120),
                    lambda: sysfs.VdpaSysfs().driver('fam0'),
                    lambda: sysfs.VdpaSysfs().bind('fam0')):
                e = self.assertRaises(exception.VdpaNotLoaded, call)
                self.assertIn('fam0', str(e))
        finally:
            for m in MODULES:
                base.modprobe(m)
        with netlink.VdpaClient() as c:
            self.assertEqual([SIM], [m.handle for m in
                                     c.list_management_devices()])
            # The reloaded family has a new id...
            self.assertNotEqual(family_id, c._sock.prid)
        # ...which the long-lived client follows.
        self.assertEqual([SIM], [m.handle for m in
                                 client.list_management_devices()])


class TestThreads(KernelTestCase):

    def test_clients_in_threads(self):
        errors = []

        def work(i):
            try:
                with netlink.VdpaClient() as c:
                    c.create_device('thr%d' % i, SIM)
                    c.get_config('thr%d' % i)
            except Exception as e:
                errors.append(e)
        threads = [threading.Thread(target=work, args=(i,))
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual([], errors)
        self.assertEqual(4, len(self.client.list_devices()))


class TestVhostBackend(KernelTestCase):
    """The backend ioctls the fake answers, on a real vdpa_sim_net node."""

    def test_vdpasim_net_can_migrate(self):
        self.create('mig0')
        self.sysfs.bind('mig0')
        chardev = self.sysfs.chardev('mig0')
        backend = self.sysfs.backend(chardev, 'mig0')
        # what the fake kernel's vdpasim_net answers
        self.assertEqual(vhost.Backend(*fake_kernel.vdpasim_net().backend),
                         backend)
        self.assertIsNone(backend.migration_blocker(
            self.client.get_config('mig0').device_features))
        # closed again: the next opener (QEMU) gets it
        self.assertFalse(self.sysfs.is_open(chardev, 'mig0'))

    def test_held_node(self):
        self.create('mig1')
        self.sysfs.bind('mig1')
        chardev = self.sysfs.chardev('mig1')
        fd = os.open(chardev, os.O_RDWR)
        self.addCleanup(os.close, fd)
        e = self.assertRaises(exception.VdpaSysfsError, self.sysfs.backend,
                              chardev, 'mig1')
        self.assertIn('a process holds it', str(e))

    def test_not_a_vhost_node(self):
        # Checked on the opened descriptor: /dev/null is not mig2's node.
        self.create('mig2')
        self.sysfs.bind('mig2')
        e = self.assertRaises(exception.VdpaChardevNotFound,
                              self.sysfs.backend, '/dev/null', 'mig2')
        self.assertIn('sysfs says', str(e))
        # Unchecked ('-'), the ioctl itself refuses a node that is not
        # vhost-vdpa.
        e = self.assertRaises(exception.VdpaSysfsError, self.sysfs.backend,
                              '/dev/null', '-')
        self.assertIn(os.strerror(errno.ENOTTY), str(e))

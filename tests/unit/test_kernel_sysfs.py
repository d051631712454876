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

"""Binding, chardevs, holders, VF facts and safe deletion on the fake tree."""

import errno
import logging
import os
import threading
import time

import fixtures
from pyroute2.netlink.exceptions import NetlinkError

from nova_vdpa import exception
from nova_vdpa.kernel import lifecycle
from nova_vdpa.kernel import sysfs
from nova_vdpa.kernel import worker as worker_mod
from tests.unit import base
from tests.unit import fake_kernel


def racy_sysfs(kernel):
    """Sysfs whose holder check lets a process open vd0 just after it."""

    class Racy(fake_kernel.FakeSysfs):
        def is_open(self, chardev, name='-'):
            busy = super().is_open(chardev, name)
            kernel.open_chardev('vd0', pid=88)
            return busy

    return Racy(kernel)


class TestBinding(base.KernelTestCase):

    def test_virtio_first_then_rebound_to_vhost(self):
        self.client.create_device('vd0', 'vdpasim_net')
        # Autoprobe picks the driver that registered first.
        self.assertEqual('virtio_vdpa', self.sysfs.driver('vd0'))
        self.sysfs.bind('vd0')
        self.assertEqual('vhost_vdpa', self.sysfs.driver('vd0'))
        self.sysfs.bind('vd0')  # idempotent
        self.assertEqual('vhost_vdpa', self.sysfs.driver('vd0'))
        node = self.sysfs.chardev('vd0')
        self.assertEqual(os.path.join(self.kernel.dev, 'vhost-vdpa-0'), node)

    def test_many_devices_each_get_their_own_chardev(self):
        nodes = set()
        for i in range(20):
            name = 'vd%d' % i
            nodes.add(lifecycle.create_device(self.client, self.sysfs, name,
                                              'vdpasim_net'))
            self.assertEqual('vhost_vdpa', self.sysfs.driver(name))
        self.assertEqual(20, len(nodes))

    def test_back_to_virtio(self):
        self.client.create_device('vd0', 'vdpasim_net')
        self.sysfs.bind('vd0', 'vhost_vdpa')
        self.sysfs.bind('vd0', 'virtio_vdpa')
        self.assertEqual('virtio_vdpa', self.sysfs.driver('vd0'))
        self.assertRaises(exception.VdpaChardevNotFound,
                          self.sysfs.chardev, 'vd0')

    def test_driver_not_loaded(self):
        self.kernel.drivers.remove('vhost_vdpa')
        os.rename(os.path.join(self.kernel.bus, 'drivers', 'vhost_vdpa'),
                  os.path.join(self.kernel.root, 'unloaded'))
        self.client.create_device('vd0', 'vdpasim_net')
        e = self.assertRaises(exception.VdpaBindError, self.sysfs.bind, 'vd0')
        self.assertIn('not loaded', str(e))

    def test_create_rolls_back_when_binding_fails(self):
        self.kernel.drivers.remove('vhost_vdpa')
        os.rename(os.path.join(self.kernel.bus, 'drivers', 'vhost_vdpa'),
                  os.path.join(self.kernel.root, 'unloaded'))
        self.assertRaises(exception.VdpaBindError, lifecycle.create_device,
                          self.client, self.sysfs, 'vd0', 'vdpasim_net',
                          client_factory=self.kernel.client)
        self.assertEqual([], self.client.list_devices())

    def test_without_driver_override_unbind_and_bind(self):
        self.client.create_device('vd0', 'vdpasim_net')
        os.unlink(self.kernel.devices['vd0'].path + '/driver_override')
        self.sysfs.bind('vd0')
        self.assertEqual('vhost_vdpa', self.sysfs.driver('vd0'))

    def test_unknown_device(self):
        self.assertRaises(exception.VdpaDeviceNotFound, self.sysfs.driver,
                          'nope')
        self.assertRaises(exception.VdpaDeviceNotFound, self.sysfs.chardev,
                          'nope')
        self.assertRaises(exception.VdpaInvalidArgument, self.sysfs.bind,
                          '../../../etc')

    def test_chardev_must_match_st_rdev(self):
        self.client.create_device('vd0', 'vdpasim_net')
        self.sysfs.bind('vd0')
        d = self.kernel.devices['vd0']
        with open(d.path + '/vhost-vdpa-0/dev', 'w') as f:
            f.write('511:7\n')
        e = self.assertRaises(exception.VdpaChardevNotFound,
                              self.sysfs.chardev, 'vd0')
        self.assertIn('511:7', str(e))

    def test_parent(self):
        self.assertIsNone(self._parent_of('vdpasim_net'))

    def _parent_of(self, mgmtdev):
        self.client.create_device('p0', mgmtdev)
        return self.sysfs.parent('p0')


class TestHeldDeviceIsNeverUnbound(base.KernelTestCase):
    """Unbinding from vhost_vdpa blocks while the chardev is held."""

    def setUp(self):
        super().setUp()
        self.node = lifecycle.create_device(self.client, self.sysfs, 'vd0',
                                            'vdpasim_net')

    def test_rebind_refused_promptly_while_held(self):
        self.kernel.open_chardev('vd0', pid=77)
        t0 = time.monotonic()
        e = self.assertRaises(exception.VdpaDeviceInUse, self.sysfs.bind,
                              'vd0', 'virtio_vdpa')
        self.assertLess(time.monotonic() - t0, 2)
        self.assertIn('refusing to rebind to virtio_vdpa it', str(e))
        self.assertIn('pid 77', str(e))
        self.assertIn(self.node, str(e))
        # Nothing was written: still on vhost_vdpa, override unchanged.
        d = self.kernel.devices['vd0']
        self.assertEqual(('vhost_vdpa', 'vhost_vdpa'), (d.driver, d.override))
        self.kernel.close_chardev('vd0')
        self.sysfs.bind('vd0', 'virtio_vdpa')
        self.assertEqual('virtio_vdpa', self.sysfs.driver('vd0'))

    def test_binding_to_the_same_driver_is_allowed_while_held(self):
        self.kernel.open_chardev('vd0', pid=77)
        self.addCleanup(self.kernel.close_chardev, 'vd0')
        self.sysfs.bind('vd0', 'vhost_vdpa')
        self.assertEqual(self.node, self.sysfs.chardev('vd0'))

    def test_open_after_the_check_times_out(self):
        k = self.kernel

        t0 = time.monotonic()
        e = self.assertRaises(exception.VdpaUnbindTimeout, racy_sysfs(k).bind,
                              'vd0', 'virtio_vdpa', timeout=0.3)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn('vd0', str(e))
        self.assertIn(self.node, str(e))
        # The driver link and the chardev are gone at once; vhost_vdpa's
        # remove waits for the holder.
        self.assertIsNone(self.sysfs.driver('vd0'))
        self.assertFalse(os.path.exists(self.node))
        d = k.devices['vd0']
        self.assertIsNotNone(d.vhost_index)  # still in the driver's remove
        k.close_chardev('vd0')
        deadline = time.monotonic() + 5
        while d.vhost_index is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertIsNone(d.vhost_index)
        self.sysfs.bind('vd0')
        self.assertEqual('vhost_vdpa', self.sysfs.driver('vd0'))

    def test_bind_while_a_blocked_unbind_ends_probes_again(self):
        k = self.kernel

        self.assertRaises(exception.VdpaUnbindTimeout, racy_sysfs(k).bind,
                          'vd0', 'virtio_vdpa', timeout=0.3)
        d = k.devices['vd0']
        # Still in vhost_vdpa's remove: a probe now is a no-op.
        k.probe(d)
        self.assertIsNone(self.sysfs.driver('vd0'))
        probes = []
        real_write = self.sysfs._write_name

        def write_name(path, name):
            probes.append(os.path.basename(path))
            if len(probes) == 1:
                # The holder lets go after the first probe was skipped.
                threading.Timer(0.1, k.close_chardev, ('vd0',)).start()
            real_write(path, name)

        self.sysfs._write_name = write_name
        self.sysfs.bind('vd0', 'vhost_vdpa', timeout=5)
        self.assertEqual('vhost_vdpa', self.sysfs.driver('vd0'))
        self.assertEqual(self.node, self.sysfs.chardev('vd0'))
        self.assertGreater(len(probes), 1)
        self.assertEqual({'drivers_probe'}, set(probes))

    def test_bad_timeout(self):
        for bad in (0, -1, 301, 'ten', None, True):
            self.assertRaises(exception.VdpaInvalidArgument, self.sysfs.bind,
                              'vd0', 'virtio_vdpa', timeout=bad)
        self.assertEqual('vhost_vdpa', self.sysfs.driver('vd0'))

    def test_unknown_driver_named(self):
        e = self.assertRaises(exception.VdpaBindError, self.sysfs.bind,
                              'vd0', 'vfio\n')
        self.assertIn('vd0', str(e))


class TestDevicesOtherToolsMade(base.KernelTestCase):
    """Names iproute2 accepts: bound, checked and deleted like ours."""

    NAMES = ('a.b', 'x:y', 'p@q', 'n' * 100, 'nl\n')

    def test_bind_check_and_delete(self):
        for name in self.NAMES:
            self.iproute2_add(name)
            self.sysfs.bind(name)
            node = self.sysfs.chardev(name)
            self.kernel.open_chardev(name, pid=70)
            e = self.assertRaises(exception.VdpaDeviceInUse,
                                  lifecycle.delete_device, self.sysfs, name,
                                  client_factory=self.kernel.client,
                                  timeout=10)
            self.assertIn(node, str(e))
            self.kernel.close_chardev(name)
            lifecycle.delete_device(self.sysfs, name,
                                    client_factory=self.kernel.client,
                                    timeout=10)
        self.assertEqual([], self.client.list_devices())

    def test_name_twins_by_trailing_newline_are_never_confused(self):
        # bind/unbind/drivers_probe ignore one trailing newline: with both
        # 'tw' and 'tw\n' on the bus, a write could hit the other one.
        self.iproute2_add('tw')
        self.iproute2_add('tw\n')
        for name in ('tw', 'tw\n'):
            e = self.assertRaises(exception.VdpaBindError, self.sysfs.bind,
                                  name)
            self.assertIn('trailing newline', str(e))
        # Refused before anything was written.
        self.assertEqual([('virtio_vdpa', None), ('virtio_vdpa', None)],
                         [(d.driver, d.override)
                          for d in self.kernel.devices.values()])
        lifecycle.delete_device(self.sysfs, 'tw',
                                client_factory=self.kernel.client, timeout=10)
        self.sysfs.bind('tw\n')
        self.assertEqual('vhost_vdpa', self.sysfs.driver('tw\n'))

    def test_the_fake_matches_names_like_sysfs_streq(self):
        self.iproute2_add('tw')
        self.sysfs._write(os.path.join(self.kernel.bus, 'drivers',
                                       'virtio_vdpa', 'unbind'), 'tw\n')
        self.assertIsNone(self.sysfs.driver('tw'))


class TestRollback(base.KernelTestCase):

    def test_failed_rollback_is_logged_and_the_bind_error_raised(self):
        logs = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        self.kernel.drivers.remove('vhost_vdpa')
        os.rename(os.path.join(self.kernel.bus, 'drivers', 'vhost_vdpa'),
                  os.path.join(self.kernel.root, 'unloaded'))

        def refuse(d):
            raise NetlinkError(errno.EBUSY)
        self.useFixture(fixtures.MockPatchObject(self.kernel, '_dev_del',
                                                 refuse))
        e = self.assertRaises(exception.VdpaBindError,
                              lifecycle.create_device, self.client,
                              self.sysfs, 'vd0', 'vdpasim_net',
                              client_factory=self.kernel.client)
        self.assertIn('vhost_vdpa is not loaded', str(e))
        self.assertIn('vDPA device vd0 on vdpasim_net could not be bound',
                      logs.output)
        self.assertIn('left behind', logs.output)
        self.assertEqual(['vd0'],
                         [d.name for d in self.client.list_devices()])


class TestParentAndVf(base.KernelTestCase):

    mgmtdevs = [fake_kernel.mlx5_vf('0000:08:00.2')]

    def test_vdpa_device_parent_is_the_vf(self):
        self.client.create_device('vf0', 'pci/0000:08:00.2')
        self.assertEqual('0000:08:00.2', self.sysfs.parent('vf0'))

    def test_vf_info(self):
        pci = os.path.join(self.kernel.sys, 'bus', 'pci', 'devices')
        os.makedirs(os.path.join(pci, '0000:08:00.0'))
        for i, vf in enumerate(('0000:08:00.2', '0000:08:00.3')):
            os.makedirs(os.path.join(pci, vf))
            os.symlink('../0000:08:00.0', os.path.join(pci, vf, 'physfn'))
            os.symlink('../' + vf,
                       os.path.join(pci, '0000:08:00.0', 'virtfn%d' % i))
            with open(os.path.join(pci, vf, 'numa_node'), 'w') as f:
                f.write('1\n' if i else '-1\n')
        self.assertEqual(sysfs.VirtualFunction('0000:08:00.3', '0000:08:00.0',
                                               1, 1),
                         self.sysfs.vf_info('0000:08:00.3'))
        self.assertIsNone(self.sysfs.vf_info('0000:08:00.2').numa_node)
        e = self.assertRaises(exception.VdpaPciDeviceError,
                              self.sysfs.vf_info, '0000:08:00.0')
        self.assertIn('PCI device 0000:08:00.0', str(e))
        self.assertRaises(exception.VdpaInvalidArgument, self.sysfs.vf_info,
                          '../x')
        self.assertRaises(exception.VdpaInvalidArgument, self.sysfs.vf_info,
                          '0000:08:00.2\n')

    def test_unreadable_numa_node_is_logged(self):
        logs = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        pci = os.path.join(self.kernel.sys, 'bus', 'pci', 'devices')
        os.makedirs(os.path.join(pci, '0000:08:00.0'))
        os.makedirs(os.path.join(pci, '0000:08:00.2'))
        os.symlink('../0000:08:00.0', os.path.join(pci, '0000:08:00.2',
                                                   'physfn'))
        os.symlink('../0000:08:00.2', os.path.join(pci, '0000:08:00.0',
                                                   'virtfn0'))
        with open(os.path.join(pci, '0000:08:00.2', 'numa_node'), 'w') as f:
            f.write('garbage\n')
        self.assertIsNone(self.sysfs.vf_info('0000:08:00.2').numa_node)
        self.assertIn('Cannot read the NUMA node of VF 0000:08:00.2',
                      logs.output)


class TestInUse(base.KernelTestCase):

    def setUp(self):
        super().setUp()
        self.node = lifecycle.create_device(self.client, self.sysfs, 'vd0',
                                            'vdpasim_net',
                                            mac='02:00:00:00:00:01')

    def test_exclusive_open(self):
        self.assertFalse(self.sysfs.is_open(self.node))
        self.kernel.open_chardev('vd0', pid=77)
        self.addCleanup(self.kernel.close_chardev, 'vd0')
        self.assertTrue(self.sysfs.is_open(self.node))
        e = self.assertRaises(OSError, self.kernel.open_chardev, 'vd0')
        self.assertEqual(16, e.errno)
        self.assertEqual([sysfs.Holder(77, 'qemu-system-x86_64 -name guest')],
                         self.sysfs.holders(self.node, 'vd0'))

    def test_delete_refused_promptly_while_held(self):
        self.kernel.open_chardev('vd0', pid=77)
        t0 = time.monotonic()
        e = self.assertRaises(exception.VdpaDeviceInUse,
                              lifecycle.delete_device, self.sysfs, 'vd0',
                              timeout=10, client_factory=self.kernel.client)
        self.assertLess(time.monotonic() - t0, 2)
        self.assertIn('pid 77 (qemu-system-x86_64 -name guest)', str(e))
        self.assertIn('vdpasim_net', str(e))
        self.assertIn('vd0', str(e))
        self.assertIn('character device %s is held' % self.node, str(e))
        self.assertIn('refusing to delete it', str(e))
        self.assertNotIn('attribute', str(e))
        self.kernel.close_chardev('vd0')
        lifecycle.delete_device(self.sysfs, 'vd0',
                                timeout=10, client_factory=self.kernel.client)
        self.assertEqual([], self.client.list_devices())
        self.assertFalse(os.path.exists(self.node))

    def test_holder_we_cannot_see_is_still_refused(self):
        self.kernel.open_chardev('vd0', pid=77)
        self.addCleanup(self.kernel.close_chardev, 'vd0')
        # /proc does not show the holder to us (another user, more
        # capabilities, another pid namespace): the exclusive open still
        # proves it exists.
        fd_dir = os.path.join(self.kernel.proc, '77', 'fd')
        os.rename(fd_dir, fd_dir + '.hidden')
        self.addCleanup(os.rename, fd_dir + '.hidden', fd_dir)
        e = self.assertRaises(exception.VdpaDeviceInUse,
                              lifecycle.delete_device, self.sysfs, 'vd0',
                              timeout=10, client_factory=self.kernel.client)
        self.assertIn('pid unknown', str(e))
        self.assertEqual(['vd0'],
                         [d.name for d in self.client.list_devices()])

    def test_open_between_check_and_delete_times_out(self):
        # QEMU opens the node after our check: the kernel blocks DEV_DEL.
        k = self.kernel

        e = self.assertRaises(exception.VdpaDeleteTimeout,
                              lifecycle.delete_device, racy_sysfs(k), 'vd0',
                              timeout=0.3, client_factory=k.client)
        self.assertIn('vd0', str(e))
        # The kernel finishes once the holder closes.
        k.close_chardev('vd0')
        deadline = time.monotonic() + 5
        while 'vd0' in k.devices and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertNotIn('vd0', k.devices)

    def test_unbound_device_deletes(self):
        self.client.create_device('vd1', 'vdpasim_net')
        self.sysfs.bind('vd1', 'virtio_vdpa')
        lifecycle.delete_device(self.sysfs, 'vd1',
                                timeout=10, client_factory=self.kernel.client)
        self.assertEqual(['vd0'],
                         [d.name for d in self.client.list_devices()])

    def test_delete_unknown(self):
        e = self.assertRaises(exception.VdpaDeviceNotFound,
                              lifecycle.delete_device, self.sysfs, 'nope',
                              client_factory=self.kernel.client, timeout=10)
        self.assertIn('nope', str(e))
        self.assertNotIn('sysfs', str(e))  # the kernel's answer, not a guess

    def test_delete_after_the_modules_were_unloaded(self):
        self.kernel.unload()
        for call in (
                lambda: lifecycle.delete_device(
                    self.sysfs, 'vd0', client_factory=self.kernel.client,
                    timeout=10),
                lambda: self.sysfs.driver('vd0'),
                lambda: self.sysfs.exists('vd0'),
                lambda: self.sysfs.chardev('vd0'),
                lambda: self.sysfs.bind('vd0')):
            e = self.assertRaises(exception.VdpaNotLoaded, call)
            self.assertIn('not loaded', str(e))
            self.assertIn('vd0', str(e))

    def test_chardev_permission_error_names_the_device(self):
        class NoAccess(fake_kernel.FakeSysfs):
            def _open_exclusive(self, path):
                raise PermissionError(errno.EACCES, 'Permission denied')

        e = self.assertRaises(exception.VdpaSysfsError,
                              lifecycle.delete_device, NoAccess(self.kernel),
                              'vd0', client_factory=self.kernel.client,
                              timeout=10)
        self.assertIn('vDPA device vd0', str(e))
        self.assertIn(self.node, str(e))
        self.assertIn('Permission denied', str(e))
        self.assertEqual(['vd0'],
                         [d.name for d in self.client.list_devices()])

    def test_long_command_line_cut_at_a_word_boundary(self):
        argv = ['qemu-system-x86_64'] + ['-device', 'virtio-net-pci,id=n'] * 30
        self.kernel.open_chardev('vd0', pid=77, cmdline=argv)
        self.addCleanup(self.kernel.close_chardev, 'vd0')
        [holder] = self.sysfs.holders(self.node, 'vd0')
        self.assertLessEqual(len(holder.cmdline), sysfs.CMDLINE_MAX)
        self.assertTrue(holder.cmdline.endswith('...'))
        words = holder.cmdline[:-3].split(' ')
        self.assertEqual(argv[:len(words)], words)

    def test_shorten(self):
        self.assertEqual('short', sysfs.shorten('short'))
        self.assertEqual('aaa bbb...', sysfs.shorten('aaa bbb cccc', 11))
        # One word longer than the width: cut inside it.
        self.assertEqual('x' * 7 + '...', sysfs.shorten('x' * 20, 10))

    def test_unreadable_command_line_is_logged(self):
        logs = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        self.kernel.open_chardev('vd0', pid=77)
        self.addCleanup(self.kernel.close_chardev, 'vd0')
        cmdline = os.path.join(self.kernel.proc, '77', 'cmdline')
        os.unlink(cmdline)
        os.mkdir(cmdline)  # reading it fails with EISDIR
        self.addCleanup(os.rmdir, cmdline)
        e = self.assertRaises(exception.VdpaDeviceInUse,
                              lifecycle.delete_device, self.sysfs, 'vd0',
                              client_factory=self.kernel.client, timeout=10)
        self.assertIn('pid 77 (command line unreadable', str(e))
        self.assertIn('Cannot read the command line of pid 77', logs.output)

    def test_proc_unreadable_is_raised(self):
        self.kernel.open_chardev('vd0', pid=77)
        self.addCleanup(self.kernel.close_chardev, 'vd0')
        s = sysfs.VdpaSysfs(self.kernel.sys, self.kernel.dev,
                            os.path.join(self.kernel.root, 'no-proc'))
        e = self.assertRaises(exception.VdpaSysfsError, s.holders,
                              self.node, 'vd0')
        self.assertIn('cannot list processes', str(e))
        self.assertIn('vd0', str(e))

    def test_hidden_holders_are_logged_at_debug(self):
        logs = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        self.kernel.open_chardev('vd0', pid=77)
        self.addCleanup(self.kernel.close_chardev, 'vd0')
        # A file table we may not read (an OSError on listdir), as /proc
        # shows one of a process with more privileges than ours.
        fd_dir = os.path.join(self.kernel.proc, '77', 'fd')
        os.rename(fd_dir, fd_dir + '.x')
        self.addCleanup(os.rename, fd_dir + '.x', fd_dir)
        with open(fd_dir, 'w'):
            pass
        self.addCleanup(os.unlink, fd_dir)
        self.assertEqual([], self.sysfs.holders(self.node, 'vd0'))
        self.assertIn('the open files of 1 processes are not readable',
                      logs.output)

    def test_vhost_device_without_chardev_is_not_deleted(self):
        # Whether it is held cannot be known: refuse rather than block.
        os.unlink(self.node)
        e = self.assertRaises(exception.VdpaChardevNotFound,
                              lifecycle.delete_device, self.sysfs, 'vd0',
                              client_factory=self.kernel.client, timeout=10)
        self.assertIn('vd0', str(e))
        self.assertEqual(['vd0'],
                         [d.name for d in self.client.list_devices()])

    def test_bad_timeout_refused_before_anything(self):
        for bad in (0, -1, 301, 'ten', None):
            self.assertRaises(exception.VdpaInvalidArgument,
                              lifecycle.delete_device, self.sysfs, 'vd0',
                              timeout=bad, client_factory=self.kernel.client)
        self.assertEqual(['vd0'],
                         [d.name for d in self.client.list_devices()])

    def test_worker_threads_are_reused(self):
        before = threading.active_count()
        for i in range(5):
            self.client.create_device('x%d' % i, 'vdpasim_net')
            lifecycle.delete_device(self.sysfs, 'x%d' % i, timeout=10,
                                    client_factory=self.kernel.client)
        self.assertLessEqual(threading.active_count(), before + 1)


class TestDeleteWorker(base.KernelTestCase):

    def test_socket_closed_by_its_own_thread_on_stop(self):
        made = []

        def factory():
            client = self.kernel.client()
            made.append(client)
            return client

        self.client.create_device('vd0', 'vdpasim_net')
        worker = worker_mod.DeadlineWorker(factory, 'vdpa-delete')
        worker.submit(lambda c: c.delete_device('vd0'), 'vd0',
                      'delete').result(5)
        self.assertEqual([], self.client.list_devices())
        [client] = made
        closed_in = []
        sock = client._sock
        sock.close = lambda: closed_in.append(
            threading.current_thread().name)
        worker.stop()
        self.assertEqual(['vdpa-delete'], closed_in)
        self.assertFalse(worker._thread.is_alive())

    def test_busy_worker_keeps_the_deadline(self):
        self.client.create_device('vd0', 'vdpasim_net')

        def factory():
            return self.kernel.client()
        worker = worker_mod.shared(factory, 'delete')
        gate = threading.Event()
        self.addCleanup(gate.set)
        worker.submit(lambda c: gate.wait(10), 'stuck', 'delete')
        t0 = time.monotonic()
        e = self.assertRaises(exception.VdpaKernelTimeout,
                              lifecycle.delete_device, self.sysfs, 'vd0',
                              timeout=0.3, client_factory=factory)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn('vd0', str(e))
        self.assertIn('within 0.3 s', str(e))
        # While that request is still in the kernel, deletions fail at
        # once instead of queueing behind it.
        t0 = time.monotonic()
        self.assertRaises(exception.VdpaKernelTimeout,
                          lifecycle.delete_device, self.sysfs, 'vd0',
                          timeout=5, client_factory=factory)
        self.assertLess(time.monotonic() - t0, 1)
        gate.set()
        worker.submit(lambda c: None, 'sync', 'sync').result(timeout=5)
        self.assertEqual(['vd0'],
                         [d.name for d in self.client.list_devices()])
        # Once it returned, deletions go through again.
        lifecycle.delete_device(self.sysfs, 'vd0', timeout=5,
                                client_factory=factory)
        self.assertEqual([], self.client.list_devices())

    def test_lookup_answered_after_the_deadline_deletes_nothing(self):
        self.client.create_device('vd0', 'vdpasim_net')
        gate = threading.Event()
        self.addCleanup(gate.set)

        def factory():
            client = self.kernel.client()
            get_device = client.get_device

            def slow_get_device(name):
                gate.wait(10)  # the kernel's lock held elsewhere
                return get_device(name)
            client.get_device = slow_get_device
            return client
        e = self.assertRaises(exception.VdpaKernelTimeout,
                              lifecycle.delete_device, self.sysfs, 'vd0',
                              timeout=0.3, client_factory=factory)
        self.assertIn('vd0', str(e))
        gate.set()
        worker = worker_mod.shared(factory, 'delete')
        worker.submit(lambda c: None, 'sync', 'sync').result(timeout=5)
        # The caller was told it failed: the device is still there.
        self.assertEqual(['vd0'],
                         [d.name for d in self.client.list_devices()])

    def test_cancelled_request_never_runs(self):
        self.client.create_device('vd0', 'vdpasim_net')
        worker = worker_mod.DeadlineWorker(self.kernel.client)
        self.addCleanup(worker.stop)
        gate = threading.Event()
        blocker = worker.submit(lambda c: gate.wait(5), 'x', 'wait')
        queued = worker.submit(lambda c: c.delete_device('vd0'), 'vd0',
                               'delete')
        self.assertTrue(queued.cancel())
        gate.set()
        blocker.result(timeout=5)
        worker.submit(lambda c: None, 'sync', 'sync').result(timeout=5)
        self.assertEqual(['vd0'],
                         [d.name for d in self.client.list_devices()])


class TestVirtualAddresses(base.KernelTestCase):
    """Which devices map guest memory by virtual address."""

    def test_vdpa_sim_follows_its_use_va_parameter(self):
        self.assertFalse(self.sysfs.uses_virtual_addresses('vdpasim_net'))
        self.kernel.set_use_va(True)
        self.assertTrue(self.sysfs.uses_virtual_addresses('vdpasim_net'))

    def test_vduse_always_and_hardware_never(self):
        self.assertTrue(self.sysfs.uses_virtual_addresses('vduse'))
        self.assertFalse(self.sysfs.uses_virtual_addresses(
            'pci/0000:08:00.2'))
        self.assertFalse(self.sysfs.uses_virtual_addresses(
            'auxiliary/mlx5_core.sf.3'))

    def test_unreadable_parameter_is_a_typed_error(self):
        os.unlink(os.path.join(self.kernel.sys, sysfs.VDPA_SIM_USE_VA))
        e = self.assertRaises(exception.VdpaSysfsError,
                              self.sysfs.uses_virtual_addresses,
                              'vdpasim_net')
        self.assertIn('use_va', str(e))

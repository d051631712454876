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

"""The kernel worker and the deadlines of every privileged call.

The fake kernel holds its vdpa lock around each request, as the kernel
does, so a deletion waiting for a chardev holder keeps every other request
waiting; tests/functional/test_kernel_deadlines.py shows the same on the
real kernel.
"""

import os
import socket
import threading
import time

import fixtures
from testtools import content

from nova_vdpa import exception
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs
from nova_vdpa.kernel import worker as worker_mod
from nova_vdpa.privsep import migration as priv_migration
from nova_vdpa.privsep import vdpa as priv_vdpa
from tests.unit import base

HELD = priv_vdpa.device_name('00000000-0000-4000-8000-0000000000d0')
OTHER = priv_vdpa.device_name('00000000-0000-4000-8000-0000000000d1')
NEW = priv_vdpa.device_name('00000000-0000-4000-8000-0000000000d2')


class TestDeadlineWorker(base.KernelTestCase):

    def setUp(self):
        super().setUp()
        self.worker = worker_mod.DeadlineWorker(self.kernel.client)
        self.addCleanup(self.worker.stop)

    def test_result_and_errors_come_back(self):
        self.client.create_device('vd0', 'vdpasim_net')
        found = self.worker.call(lambda c: c.get_device('vd0'), timeout=5,
                                 device='vd0', what='device get')
        self.assertEqual('vd0', found.name)
        self.assertRaises(exception.VdpaDeviceNotFound, self.worker.call,
                          lambda c: c.get_device('nope'), timeout=5,
                          device='nope', what='device get')

    def test_stuck_call_fails_every_later_call_at_once(self):
        self.client.create_device('vd0', 'vdpasim_net')
        self.sysfs.bind('vd0')
        self.kernel.open_chardev('vd0')
        # A raw DEV_DEL of a held device waits in the kernel, holding the
        # vdpa lock.
        e = self.assertRaises(
            exception.VdpaKernelTimeout, self.worker.call,
            lambda c: c.delete_device('vd0'), timeout=0.2, device='vd0',
            what='delete')
        self.assertIn('within 0.2 s', str(e))
        self.assertEqual((0.2, 'delete'), worker_mod.stuck())
        # Another worker (another thread, another socket) fails at once.
        other = worker_mod.DeadlineWorker(self.kernel.client)
        self.addCleanup(other.stop)
        t0 = time.monotonic()
        e = self.assertRaises(
            exception.VdpaKernelTimeout, other.call,
            lambda c: c.list_devices(), timeout=30, device='*',
            what='device dump')
        self.assertIn('an earlier delete is still stuck', str(e))
        self.addDetail('timing', content.text_content(
            'call while stuck returned in %.3f s' % (time.monotonic() - t0)))
        self.kernel.close_chardev('vd0')
        self.assertTrue(worker_mod.wait_not_stuck(10))
        self.assertEqual([], other.call(lambda c: c.list_devices(),
                                        timeout=5, device='*',
                                        what='device dump'))

    def test_call_queued_behind_a_stuck_one_never_runs(self):
        self.client.create_device('vd0', 'vdpasim_net')
        gate = threading.Event()
        self.addCleanup(gate.set)
        self.worker.submit(lambda c: gate.wait(10), '-', 'wait')
        self.assertRaises(exception.VdpaKernelTimeout, self.worker.call,
                          lambda c: c.delete_device('vd0'), timeout=0.2,
                          device='vd0', what='delete')
        gate.set()
        self.worker.submit(lambda c: None, '-', 'sync').result(5)
        self.assertEqual(['vd0'],
                         [d.name for d in self.client.list_devices()])

    def test_on_timeout_builds_the_error(self):
        gate = threading.Event()
        self.addCleanup(gate.set)
        error = exception.VdpaDeleteTimeout(
            device='vd0', mgmtdev='m', attribute='a', timeout=0.1)
        e = self.assertRaises(exception.VdpaDeleteTimeout, self.worker.call,
                              lambda c: gate.wait(10), timeout=0.1,
                              device='vd0', what='delete',
                              on_timeout=lambda: error)
        self.assertIs(error, e)

    def test_shared_worker_per_role(self):
        a = worker_mod.shared(self.kernel.client, 'delete')
        self.assertIs(a, worker_mod.shared(self.kernel.client, 'delete'))
        self.assertIsNot(a, worker_mod.shared(self.kernel.client, 'other'))


class _SilentSocket(netlink.VdpaSocket):
    """A vdpa socket whose peer never answers (a lost reply)."""

    def __init__(self, recv_timeout):
        super().__init__(recv_timeout=recv_timeout)
        self._sock.close()
        self._sock, self._peer = socket.socketpair(socket.AF_UNIX,
                                                   socket.SOCK_DGRAM)
        self._sock.settimeout(recv_timeout)

    def bind(self):
        self.prid = 0x1c

    def close(self):
        super().close()
        self._peer.close()


class TestReceiveTimeout(base.TestCase):

    def test_no_answer_is_a_kernel_timeout(self):
        client = netlink.VdpaClient(
            socket_factory=lambda: _SilentSocket(0.2))
        self.addCleanup(client.close)
        e = self.assertRaises(exception.VdpaKernelTimeout,
                              client.get_device, 'vd0')
        self.assertIn('device get', str(e))
        self.assertIn('vd0', str(e))
        self.assertIn('0.2 s', str(e))


class TestPrivilegedDeadlines(base.KernelTestCase):
    """Creates, binds and reads fail fast while a deletion is stuck."""

    def setUp(self):
        super().setUp()
        base.privsep_in_process(self, self.kernel)

    def _stuck_deletion(self):
        priv_vdpa.create_bound_device(HELD, 'vdpasim_net')
        priv_vdpa.create_bound_device(OTHER, 'vdpasim_net')
        self.kernel.open_chardev(HELD)
        w = worker_mod.shared(self.kernel.client, 'delete')
        self.assertRaises(exception.VdpaKernelTimeout, w.call,
                          lambda c: c.delete_device(HELD), timeout=0.2,
                          device=HELD, what='delete')

    def test_every_call_fails_fast_then_works(self):
        self._stuck_deletion()
        calls = {
            'create': lambda: priv_vdpa.create_bound_device(
                NEW, 'vdpasim_net'),
            'bind': lambda: priv_vdpa.bind_device(OTHER),
            'backend': lambda: priv_migration.read_backend(OTHER),
            'delete': lambda: priv_vdpa.delete_device(OTHER, timeout=5),
        }
        results = {}
        timings = []

        def run(what, fn):
            t0 = time.monotonic()
            try:
                fn()
                results[what] = 'returned'
            except exception.VdpaKernelTimeout:
                results[what] = 'VdpaKernelTimeout'
            timings.append('%s: %s in %.3f s' % (what, results[what],
                                                 time.monotonic() - t0))
        threads = [threading.Thread(target=run, args=item)
                   for item in calls.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.addDetail('timing', content.text_content('\n'.join(timings)))
        self.assertEqual(dict.fromkeys(calls, 'VdpaKernelTimeout'), results)
        self.kernel.close_chardev(HELD)
        self.assertTrue(worker_mod.wait_not_stuck(10))
        self.assertEqual([OTHER], [d.name for d in
                                   self.client.list_devices()])
        priv_vdpa.create_bound_device(NEW, 'vdpasim_net')
        self.assertTrue(priv_vdpa.bind_device(OTHER).startswith(
            self.kernel.dev))
        priv_migration.read_backend(OTHER)
        priv_vdpa.delete_device(OTHER, timeout=5)
        self.assertEqual([NEW], [d.name for d in
                                 self.client.list_devices()])

    def test_daemon_call_past_its_deadline(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.vdpa.DAEMON_TIMEOUT', 0.2))
        with self.kernel.vdpa_lock:
            e = self.assertRaises(exception.VdpaKernelTimeout,
                                  priv_vdpa.create_bound_device, NEW,
                                  'vdpasim_net')
            self.assertIn('create', str(e))
        self.assertTrue(worker_mod.wait_not_stuck(10))
        # The creation went on once the lock was free; the caller was
        # told it failed, and the next allocation finds the device.
        self.assertEqual([NEW], [d.name for d in
                                 self.client.list_devices()])

    def test_flood_fails_fast(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.vdpa.DAEMON_TIMEOUT', 2.0))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.vdpa._in_flight',
            threading.BoundedSemaphore(2)))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.vdpa.MAX_IN_FLIGHT', 2))
        results = []

        def create(i):
            name = priv_vdpa.device_name('00000000-0000-4000-8000-%012d' % i)
            results.append(self._result_of(
                lambda: priv_vdpa.create_bound_device(name, 'vdpasim_net')))
        with self.kernel.vdpa_lock:
            waiting = [threading.Thread(target=create, args=(i,))
                       for i in range(2)]
            for t in waiting:
                t.start()
            for _ in range(500):
                if priv_vdpa._in_flight._value == 0:
                    break
                time.sleep(0.01)
            t0 = time.monotonic()
            e = self.assertRaises(exception.VdpaPrivilegedCallsBusy,
                                  priv_vdpa.bind_device, OTHER)
            self.addDetail('timing', content.text_content(
                'call over the bound returned in %.3f s'
                % (time.monotonic() - t0)))
            self.assertIn('2 privileged vdpa calls', str(e))
        for t in waiting:
            t.join(30)
        self.assertTrue(worker_mod.wait_not_stuck(10))
        self.assertEqual(2, len(results))
        # Both slots are free again.
        priv_vdpa.create_bound_device(NEW, 'vdpasim_net')
        self.assertIn(NEW, [d.name for d in self.client.list_devices()])

    @staticmethod
    def _result_of(fn):
        try:
            fn()
            return 'returned'
        except exception.VdpaKernelTimeout as e:
            return type(e).__name__


class TestOpenedNodeChecked(base.KernelTestCase):
    """The device number is checked on the opened descriptor."""

    def test_node_of_another_device_refused(self):
        self.client.create_device('vd0', 'vdpasim_net')
        self.sysfs.bind('vd0', sysfs.VHOST_VDPA)
        node = self.sysfs.chardev('vd0')
        child = [c for c in os.listdir(self.kernel.bus + '/devices/vd0')
                 if c.startswith('vhost-vdpa-')][0]
        # sysfs now names another device number than the node's.
        with open('%s/devices/vd0/%s/dev' % (self.kernel.bus, child),
                  'w') as f:
            f.write('511:7\n')
        e = self.assertRaises(exception.VdpaChardevNotFound,
                              self.sysfs.is_open, node, 'vd0')
        self.assertIn('511:7', str(e))
        self.assertRaises(exception.VdpaChardevNotFound,
                          self.sysfs.backend, node, 'vd0')

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

"""Deferred releases against the fake kernel, privsep entrypoints in-process.

A holder is the fake kernel's ``open_chardev`` (exclusive, and a deletion
of a held device would block, as on the real kernel); the same scenario
runs on the real kernel with a real open fd in
tests/functional/test_allocator_deferred.py. Retries are driven by calling
``retry()``, as nova-compute's periodic task does.
"""

import logging
import threading

import fixtures

from nova_vdpa import allocator
from nova_vdpa.allocator import deferred
from nova_vdpa import exception
from tests.unit import base

PORT_A = '0c1d8a52-4f0e-4b8e-9d1a-6a3f2b7c9e01'
PORT_B = '0c1d8a52-4f0e-4b8e-9d1a-6a3f2b7c9e02'
SIM_VF = '0000:00:05.1'
MAC = 'fa:16:3e:00:00:0a'
INSTANCE = '7f3e1c2a-9b8d-4e6f-a5c4-3b2a1d0e9f87'


class DeferredTestCase(base.KernelTestCase):
    """DeferredReleases over a real Allocator on a fake kernel."""

    allowed: tuple[str, ...] = ('vdpasim_net',)

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(
            name='nova_vdpa', level=logging.INFO))
        base.privsep_in_process(self, self.kernel, self.allowed)
        self.alloc = allocator.Allocator(
            management_devices=self.allowed,
            simulated_vfs={SIM_VF: 'vdpasim_net'},
            client_factory=self.kernel.client, sysfs=self.sysfs)
        self.addCleanup(self.alloc.close)
        self.releases = deferred.DeferredReleases(self.alloc)

    def request(self, port=PORT_A):
        return allocator.PortRequest(port_id=port, vf_address=SIM_VF,
                                     mac=MAC, mtu=1450)

    def held(self, port=PORT_A, pid=4242):
        """Allocate the port's device and let a process open it."""
        a = self.releases.allocate(self.request(port))
        self.kernel.open_chardev(a.name, pid=pid,
                                 cmdline=('qemu-system-x86_64', '-name',
                                          'guest=instance-0001'))
        return a

    def ports(self, pending):
        return [p.port_id for p in pending]


class TestRelease(DeferredTestCase):

    def test_free_device_is_released_at_once(self):
        a = self.releases.allocate(self.request())
        self.assertTrue(self.releases.release(PORT_A, SIM_VF))
        self.assertNotIn(a.name, self.kernel.devices)
        self.assertEqual([], self.releases.pending())
        self.assertNotIn('WARNING', self.log.output)

    def test_held_device_is_deferred_and_deleted_once_closed(self):
        a = self.held()
        self.assertFalse(self.releases.release(PORT_A, SIM_VF, INSTANCE))
        self.assertIn(a.name, self.kernel.devices)
        (pending,) = self.releases.pending()
        self.assertEqual((PORT_A, SIM_VF, a.name, INSTANCE, 1),
                         (pending.port_id, pending.vf_address,
                          pending.device, pending.instance_uuid,
                          pending.attempts))
        self.assertIsInstance(pending.error, exception.VdpaDeviceInUse)
        self.assertIn('vDPA device %s of port %s (VF %s, %s) is still open, '
                      'held by pid 4242 (qemu-system-x86_64 -name '
                      'guest=instance-0001): its release is deferred'
                      % (a.name, PORT_A, SIM_VF, a.chardev), self.log.output)

        # Retried while held by the same process: kept, and no new
        # warning (one per state change, not one per period).
        self.assertEqual([PORT_A], self.ports(self.releases.retry()))
        self.assertEqual([PORT_A], self.ports(self.releases.retry()))
        self.assertIn(a.name, self.kernel.devices)
        self.assertEqual(3, self.releases.pending()[0].attempts)
        self.assertNotIn('still waits for', self.log.output)
        self.assertEqual('pid 4242 (qemu-system-x86_64 -name '
                         'guest=instance-0001)',
                         self.releases.pending()[0].waiting_for)

        # Another holder is another state: one warning for it.
        self.kernel.close_chardev(a.name)
        self.kernel.open_chardev(a.name, pid=4343)
        self.releases.retry()
        self.releases.retry()
        self.assertEqual(1, self.log.output.count(
            'Release of vDPA device %s of port %s (VF %s, %s) '
            'still waits for pid 4343' % (a.name, PORT_A, SIM_VF,
                                          a.chardev)))

        self.kernel.close_chardev(a.name)
        self.assertEqual([], self.releases.retry())
        self.assertNotIn(a.name, self.kernel.devices)
        self.assertIn('Deferred release of vDPA device %s of port %s done'
                      % (a.name, PORT_A), self.log.output)

    def test_only_held_ports_wait(self):
        a = self.held()
        b = self.releases.allocate(self.request(PORT_B))
        self.assertFalse(self.releases.release(PORT_A))
        self.assertTrue(self.releases.release(PORT_B))
        self.assertEqual([a.name], sorted(self.kernel.devices))
        self.assertNotIn(b.name, self.log.output)

    def test_too_many_calls_in_flight_is_retried_quietly(self):
        a = self.releases.allocate(self.request())
        slots = threading.BoundedSemaphore(1)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.vdpa._in_flight', slots))
        slots.acquire()  # one privileged call of another thread
        self.assertFalse(self.releases.release(PORT_A, SIM_VF))
        (pending,) = self.releases.pending()
        self.assertIsInstance(pending.error,
                              exception.VdpaPrivilegedCallsBusy)
        self.assertNotIn('Unexpected error', self.log.output)
        self.assertIn(a.name, self.kernel.devices)
        slots.release()
        self.assertEqual([], self.releases.retry())
        self.assertNotIn(a.name, self.kernel.devices)

    def test_releasing_a_pending_port_again_queues_it_once(self):
        self.held()
        self.releases.release(PORT_A)
        self.releases.release(PORT_A)
        (pending,) = self.releases.pending()
        self.assertEqual(2, pending.attempts)
        self.assertEqual(1, self.log.output.count('is still open'))

    def test_holder_named_by_the_finder(self):
        a = self.held()
        asked = []

        def find(chardev):
            asked.append(chardev)
            return 'libvirt domain instance-0001 (instance %s)' % INSTANCE
        self.releases = deferred.DeferredReleases(self.alloc, find)
        self.releases.release(PORT_A, SIM_VF)
        self.assertEqual([a.chardev], asked)
        self.assertIn('%s is still open, held by libvirt domain '
                      'instance-0001 (instance %s)'
                      % (a.chardev + ')', INSTANCE), self.log.output)

    def test_a_failing_finder_does_not_stop_the_release(self):
        def find(chardev):
            raise RuntimeError('libvirt went away')
        self.releases = deferred.DeferredReleases(self.alloc, find)
        self.held()
        self.assertFalse(self.releases.release(PORT_A))
        self.assertIn('held by pid 4242', self.log.output)

    def test_device_gone_meanwhile_leaves_the_queue(self):
        a = self.held()
        self.releases.release(PORT_A)
        self.kernel.close_chardev(a.name)
        self.client.delete_device(a.name)  # an operator's vdpa dev del
        self.assertEqual([], self.releases.retry())
        self.assertEqual([], sorted(self.kernel.devices))

    def test_defer_queues_without_trying(self):
        a = self.releases.allocate(self.request())
        error = exception.VdpaDeviceInUse(
            device=a.name, mgmtdev='vdpasim_net', chardev=a.chardev,
            pid='4242', cmdline='qemu', action='delete')
        # As the privsep daemon's error arrives: rebuilt from its message.
        self.releases.defer(PORT_A, None, type(error)(*error.args),
                            INSTANCE)
        self.assertIn(a.name, self.kernel.devices)
        self.assertIn('(VF -, %s) is still open, held by a process /proc '
                      'does not show' % a.chardev, self.log.output)
        self.assertEqual([], self.releases.retry())
        self.assertNotIn(a.name, self.kernel.devices)


class TestAllocatedAgain(DeferredTestCase):
    """A re-attached port never loses the device its guest now uses."""

    def test_allocation_drops_the_pending_release(self):
        a = self.held()
        self.releases.release(PORT_A)
        # The old holder goes, the port is attached again: same device.
        self.kernel.close_chardev(a.name)
        self.assertEqual(a.name, self.releases.allocate(self.request()).name)
        self.assertEqual([], self.releases.pending())
        self.assertIn('deferred release of vDPA device %s is dropped'
                      % a.name, self.log.output)
        self.assertEqual([], self.releases.retry())
        self.assertIn(a.name, self.kernel.devices)

    def test_allocation_waits_for_a_retry_under_way(self):
        a = self.held()
        self.releases.release(PORT_A)
        self.kernel.close_chardev(a.name)
        order = []
        in_release, go, waiting = (threading.Event(), threading.Event(),
                                   threading.Event())
        real_release, real_allocate = self.alloc.release, self.alloc.allocate
        real_lock = deferred._lock

        def release(*args):
            in_release.set()
            self.assertTrue(go.wait(10))
            real_release(*args)
            order.append('released')

        def allocate(request):
            order.append('allocate')
            return real_allocate(request)

        def lock(port_id):
            if threading.current_thread() is not retrier:
                waiting.set()
            return real_lock(port_id)

        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.allocator.deferred._lock', lock))
        self.alloc.release = release
        self.alloc.allocate = allocate
        retrier = threading.Thread(target=self.releases.retry)
        retrier.start()
        self.assertTrue(in_release.wait(10))
        allocator_thread = threading.Thread(
            target=self.releases.allocate, args=(self.request(),))
        allocator_thread.start()
        self.assertTrue(waiting.wait(10))
        go.set()
        retrier.join(10)
        allocator_thread.join(10)
        # The retry under way finished first; the allocation made the
        # device again and nothing is pending any more.
        self.assertEqual(['released', 'allocate'], order)
        self.assertIn(a.name, self.kernel.devices)
        self.assertEqual([], self.releases.pending())


class TestNotOurs(DeferredTestCase):
    """A release no retry can cure is logged once and not queued."""

    allowed = ('pci/0000:08:00.2',)

    def test_refused_management_device(self):
        name = allocator.device_name(PORT_A)
        self.client.create_device(name, 'vdpasim_net')
        self.assertTrue(self.releases.release(PORT_A, SIM_VF, INSTANCE))
        self.assertEqual([], self.releases.pending())
        self.assertIn('Could not release the vDPA device of port %s, and no '
                      'retry can' % PORT_A, self.log.output)
        self.assertIn('management_devices', self.log.output)
        self.assertEqual([name], sorted(self.kernel.devices))

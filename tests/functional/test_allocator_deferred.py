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

"""Deferred releases on the real kernel, through a real privsep daemon.

A real open fd on ``/dev/vhost-vdpa-N`` (as QEMU holds it) outlasts the
deletion timeout: the release returns at once with the device queued,
retries while the fd is open keep it, the retry after the close deletes
it. ``retry()`` is called directly, as nova-compute's periodic resource
update calls it. The unit tests' fake kernel
(tests/unit/test_allocator_deferred.py) is checked against this.
"""

import time

import fixtures

from nova_vdpa import allocator
from nova_vdpa.allocator import deferred
from nova_vdpa import exception
from tests.functional.allocator_base import AllocatorBedTestCase
from tests.functional.allocator_base import PORTS
from tests.functional.allocator_base import SIM_VF

#: seconds a deletion may wait for the kernel in these tests
DELETE_TIMEOUT = 1.0


class TestDeferredRelease(AllocatorBedTestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(name='nova_vdpa'))
        self.alloc = self.allocator(delete_timeout=DELETE_TIMEOUT)
        self.releases = deferred.DeferredReleases(self.alloc)

    def test_held_past_the_deletion_timeout_then_deleted_after_close(self):
        a = self.releases.allocate(self.request(0, mtu=1400))
        held_at = time.monotonic()
        close = self.hold(a.chardev)

        self.assertFalse(self.releases.release(PORTS[0], SIM_VF))
        (pending,) = self.releases.pending()
        # Refused before any DEV_DEL: nothing sleeps in the kernel, so
        # iproute2's dump answers and still lists the device.
        self.assertIsInstance(pending.error, exception.VdpaDeviceInUse)
        self.assertEqual({a.name: 'vdpasim_net'}, self.devices())
        self.assertIn('vDPA device %s of port %s (VF %s, %s) is still open'
                      % (a.name, PORTS[0], SIM_VF, a.chardev),
                      self.log.output)

        # The holder outlasts the deletion deadline (not a wait for a
        # periodic task: retries are driven below).
        while time.monotonic() - held_at <= 2 * DELETE_TIMEOUT:
            time.sleep(0.2)
        (still,) = self.releases.retry()
        self.assertEqual(PORTS[0], still.port_id)
        self.assertEqual({a.name: 'vdpasim_net'}, self.devices())
        # The same holder: logged once when deferred, not at every retry.
        self.assertEqual('a process /proc does not show', still.waiting_for)
        self.assertNotIn('still waits for', self.log.output)

        close()
        self.assertEqual([], self.releases.retry())
        self.assertEqual({}, self.devices())
        self.assertIn('Deferred release of vDPA device %s of port %s done'
                      % (a.name, PORTS[0]), self.log.output)

    def test_allocated_again_while_pending_keeps_the_device(self):
        a = self.releases.allocate(self.request(1))
        close = self.hold(a.chardev)
        self.assertFalse(self.releases.release(PORTS[1], SIM_VF))
        close()
        # Attached again before the periodic task: the same device, and
        # the pending release is gone with the new allocation.
        self.assertEqual(a.name,
                         self.releases.allocate(self.request(1)).name)
        self.assertEqual([], self.releases.retry())
        self.assertEqual({a.name: 'vdpasim_net'}, self.devices())
        self.assertEqual(a, self.alloc.lookup(PORTS[1], SIM_VF))
        self.assertIsNone(
            self.alloc.lookup(PORTS[2], SIM_VF))  # nothing else made
        self.assertEqual(allocator.device_name(PORTS[1]), a.name)

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

"""nova-vdpa's real privsep daemon SIGKILLed while the allocator lives on.

As the OOM killer or an admin would: the allocating process is not
restarted, so no reconcile runs. The call in flight gets a typed error at
once, the next call starts a new daemon, and no device of ours is left
unbound or on virtio_vdpa. tests/unit/test_privsep_channel.py and the
allocator's unit tests (TestPrivsepDaemonKilled) check the same with a
forked daemon and the fake kernel; ``tools/crash_safety.py --mode daemon``
and ``--mode daemon-unread`` kill it many times at random.
"""

import os
import signal
import threading
import time

import fixtures
from testtools import content

from nova_vdpa import allocator
from nova_vdpa import exception
import nova_vdpa.privsep
from nova_vdpa.privsep import vdpa as priv_vdpa
from tests.functional import allocator_base
from tests.functional import base

#: a port that never has a device
NO_PORT = '7c0e3f5a-1d2b-4c3d-8e4f-5a6b7c8d9eff'


class TestDaemonKilled(allocator_base.AllocatorBedTestCase):

    def setUp(self):
        super().setUp()
        # oslo.privsep's reader thread dies when its daemon is killed, as
        # these tests mean it to: its traceback goes to the test's
        # details, not to the bed's console. Any other thread's error is
        # printed as usual.
        hook = threading.excepthook
        deaths = []

        def excepthook(args):
            if (args.thread is not None
                    and args.thread.name == 'privsep_reader'
                    and issubclass(args.exc_type, OSError)):
                deaths.append('%s: %s' % (args.exc_type.__name__,
                                          args.exc_value))
            else:
                hook(args)
        self.useFixture(fixtures.MonkeyPatch('threading.excepthook',
                                             excepthook))
        self.addDetail('privsep reader deaths', content.Content(
            content.UTF8_TEXT, lambda: ['\n'.join(deaths).encode()]))

    def running_daemon(self):
        """The daemon's pid, started by a harmless call if need be."""
        if base.privsep_daemon_pid() is None:
            self.assertRaises(exception.VdpaDeviceNotFound,
                              priv_vdpa.delete_device,
                              allocator.device_name(NO_PORT), 10)
        pid = base.privsep_daemon_pid()
        self.assertIsNotNone(pid)
        return pid

    def in_thread(self, fn, *args):
        box = []

        def run():
            try:
                box.append(fn(*args))
            except Exception as e:  # the test inspects what it was
                box.append(e)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, box

    def assertNotHalfMade(self, name):
        """Gone, or bound to vhost_vdpa: never unbound or virtio_vdpa."""
        if name in self.devices():
            self.assertEqual('vhost_vdpa', self.driver(name))

    def test_killed_between_creation_and_binding(self):
        name = allocator.device_name(allocator_base.PORTS[0])
        caught = []
        for attempt in range(3):
            pid = self.running_daemon()
            thread, box = self.in_thread(self.alloc.allocate,
                                         self.request(0))
            path = '/sys/bus/vdpa/devices/' + name
            end = time.monotonic() + 300
            while not os.path.exists(path) and thread.is_alive() and \
                    time.monotonic() < end:
                pass
            # Frozen, the daemon shows where it was; then killed there.
            os.kill(pid, signal.SIGSTOP)
            try:
                driver = os.path.basename(os.readlink(path + '/driver'))
            except OSError:
                driver = 'none' if os.path.exists(path) else 'no device'
            caught.append(driver)
            os.kill(pid, signal.SIGKILL)
            thread.join(600)
            self.assertFalse(thread.is_alive())
            (outcome,) = box
            if not isinstance(outcome, allocator.Allocation):
                self.assertIsInstance(outcome, exception.VdpaPrivsepDied)
            self.assertNotHalfMade(name)
            # The next call: a new daemon, the device made whole.
            t0 = time.monotonic()
            found = self.alloc.allocate(self.request(0))
            self.addDetail('attempt %d' % attempt, content.text_content(
                'killed with the device on %s: %s; the next allocate took '
                '%.1f s' % (driver, type(outcome).__name__,
                            time.monotonic() - t0)))
            self.assertNotEqual(pid, base.privsep_daemon_pid())
            self.assertEqual('vhost_vdpa', self.driver(name))
            self.assertTrue(os.path.exists(found.chardev))
            self.alloc.release(allocator_base.PORTS[0])
            self.assertNotIn(name, self.devices())
            if caught[-1] in ('virtio_vdpa', 'none'):
                break
        # At least one kill landed between the creation and the binding.
        self.assertIn(caught[-1], ('virtio_vdpa', 'none'), caught)

    def test_killed_with_a_release_unread_is_released_at_once(self):
        made = self.alloc.allocate(self.request(1))
        pid = self.running_daemon()
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        thread, box = self.in_thread(self.alloc.release,
                                     allocator_base.PORTS[1])
        channel = nova_vdpa.privsep.vdpa_pctxt.channel
        for _ in range(6000):
            with channel.lock:
                if channel.outstanding_msgs:
                    break
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        # Far less than the deletion's privsep timeout (330 s).
        thread.join(priv_vdpa.DELETE_CALL_TIMEOUT - 30)
        self.assertFalse(thread.is_alive())
        self.addDetail('release', content.text_content(
            'killed with the request unread; the release (once more, '
            'through a new daemon) took %.1f s' % (time.monotonic() - t0)))
        self.assertEqual([None], box)
        self.assertNotIn(made.name, self.devices())
        self.assertNotEqual(pid, base.privsep_daemon_pid())

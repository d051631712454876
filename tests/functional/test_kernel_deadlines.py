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

"""No privileged call hangs, and nothing of ours breaks a guest's start.

On the real kernel, through a real privsep daemon:

* a held chardev and a deletion forced on it (a raw DEV_DEL: the daemon
  refuses to delete a held device, so a careless tool sends it) keep the
  kernel's vdpa lock; creates, binds, backend reads, deletions and the
  allocator's reads, from several threads at once, each end with a typed
  error; once the holder lets go, everything works again. Times are
  printed, not asserted.
* the same stuck deletion in nova-compute's eventlet mode: a process
  patched with eventlet before it imports nova_vdpa (tests/green_probe.py)
  asks the kernel for the held device; its call ends typed at its
  deadline, and another green thread ran while it waited.
* a loop of opens of a guest's node, as libvirt does for QEMU, while the
  allocator creates, reads and releases other devices and reads the
  guest's device: no open fails with EBUSY.
"""

import errno
import json
import logging
import os
import subprocess
import sys
import threading
import time

import fixtures
from testtools import content

from nova_vdpa import allocator
from nova_vdpa import exception
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import worker
from nova_vdpa.privsep import migration as priv_migration
from nova_vdpa.privsep import vdpa as priv_vdpa
from tests.functional.allocator_base import AllocatorBedTestCase
from tests.functional.allocator_base import PORTS
from tests.functional.allocator_base import SIM_VF


class TestDeadlines(AllocatorBedTestCase):

    def forced_deletion(self, name):
        """A raw DEV_DEL of a held device, waiting in the kernel."""
        def raw_delete():
            with netlink.VdpaClient() as c:
                c.delete_device(name)
        deleter = threading.Thread(target=raw_delete, daemon=True)
        deleter.start()
        self.addCleanup(deleter.join, 60)
        task = '/proc/%d/task/%d/wchan' % (os.getpid(), deleter.native_id)
        for _ in range(600):
            with open(task) as f:
                if 'vhost_vdpa' in f.read():
                    return deleter
            time.sleep(0.1)
        self.fail('the raw deletion never waited in the kernel')

    def in_threads(self, calls):
        """Run ``calls`` at once; each one's outcome and seconds."""
        outcomes = {}

        def run(label, fn):
            t0 = time.monotonic()
            try:
                fn()
                outcome = 'returned'
            except exception.NovaVdpaException as e:
                outcome = type(e).__name__
            outcomes[label] = (outcome, round(time.monotonic() - t0, 2))
        threads = [threading.Thread(target=run, args=item, daemon=True)
                   for item in calls.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual([], [t for t in threads if t.is_alive()])
        return outcomes

    def test_green_threads_run_while_a_call_is_stuck(self):
        held = self.alloc.allocate(self.request(0))
        close = self.hold(held.chardev)
        self.addCleanup(close)
        deleter = self.forced_deletion(held.name)
        root = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))
        # The probe's worker thread stays in the kernel until the holder
        # lets go, and the probe cannot exit before: read its line first.
        probe = subprocess.Popen(
            [sys.executable, '-m', 'tests.green_probe', '--device',
             held.name, '--timeout', '3'], cwd=root, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=root, PYTHONWARNINGS='ignore'))
        line = probe.stdout.readline()
        close()
        deleter.join(60)
        self.assertFalse(deleter.is_alive())
        out, err = probe.communicate(timeout=120)
        self.addDetail('probe', content.text_content(line + out + err))
        self.assertEqual(0, probe.returncode)
        found = json.loads(line)
        self.assertTrue(found['green'])
        self.assertEqual('VdpaKernelTimeout', found['first']['outcome'])
        # Another green thread ran while the call waited in the kernel.
        self.assertGreater(found['first']['ticks'], 0)
        self.assertEqual('VdpaKernelTimeout', found['second']['outcome'])

    def test_calls_end_typed_while_a_deletion_is_stuck(self):
        self.useFixture(fixtures.FakeLogger(name='oslo_privsep',
                                            level=logging.WARNING))
        held = self.alloc.allocate(self.request(0))
        other = self.alloc.allocate(self.request(1))
        close = self.hold(held.chardev)
        self.addCleanup(close)
        deleter = self.forced_deletion(held.name)
        alloc = self.allocator(read_timeout=3)

        def calls(n):
            return {
                'create': lambda: priv_vdpa.create_bound_device(
                    allocator.device_name(PORTS[2 + n]), 'vdpasim_net'),
                'bind': lambda: priv_vdpa.bind_device(other.name),
                'backend read': lambda: priv_migration.read_backend(
                    other.name),
                'delete': lambda: priv_vdpa.delete_device(other.name,
                                                          timeout=5),
                'allocator read': lambda: alloc.lookup(PORTS[1], SIM_VF),
            }
        first = self.in_threads(calls(0))
        self.addDetail('first round', content.text_content(str(first)))
        self.assertEqual(dict.fromkeys(first, 'VdpaKernelTimeout'),
                         {k: v[0] for k, v in first.items()})
        again = self.in_threads(calls(1))
        self.addDetail('second round', content.text_content(str(again)))
        self.assertEqual(dict.fromkeys(again, 'VdpaKernelTimeout'),
                         {k: v[0] for k, v in again.items()})

        close()
        deleter.join(60)
        self.assertFalse(deleter.is_alive())
        # The calls stuck past their deadlines end just after the
        # deletion; until they have, calls still fail at once.
        t0 = time.monotonic()
        for _ in range(600):
            try:
                chardev = priv_vdpa.bind_device(other.name)
                break
            except exception.VdpaKernelTimeout:
                time.sleep(0.1)
        # And this process's reader, stuck past its deadline too.
        self.assertTrue(worker.wait_not_stuck(60))
        self.addDetail('timing', content.text_content(
            'working again %.1f s after the holder let go'
            % (time.monotonic() - t0)))
        self.assertEqual(other.chardev, chardev)
        made = priv_vdpa.create_bound_device(
            allocator.device_name(PORTS[4]), 'vdpasim_net')
        self.assertIsNotNone(made.backend)
        self.assertEqual(made.backend,
                         priv_migration.read_backend(made.device.name))
        self.assertEqual(other, alloc.lookup(PORTS[1], SIM_VF))
        priv_vdpa.delete_device(other.name, timeout=5)
        self.assertNotIn(other.name, self.devices())
        self.assertNotIn(held.name, self.devices())

    def test_opens_as_qemu_does_never_fail_because_of_us(self):
        guest = self.alloc.allocate(self.request(0))
        stop = threading.Event()
        counts = {'opens': 0, 'EBUSY': 0, 'other errors': []}

        def qemu_opens():
            # libvirt opens the node for QEMU with O_RDWR and passes the
            # descriptor on; QEMU keeps it while it runs.
            while not stop.is_set():
                try:
                    fd = os.open(guest.chardev, os.O_RDWR)
                except OSError as e:
                    if e.errno == errno.EBUSY:
                        counts['EBUSY'] += 1
                    else:
                        counts['other errors'].append(str(e))
                    continue
                counts['opens'] += 1
                time.sleep(0.02)
                os.close(fd)
                time.sleep(0.005)
        opener = threading.Thread(target=qemu_opens, daemon=True)
        opener.start()
        self.addCleanup(opener.join, 30)
        self.addCleanup(stop.set)
        t0 = time.monotonic()
        rounds = 0
        while rounds < 4 or time.monotonic() - t0 < 20:
            rounds += 1
            port = 1 + rounds % 3
            # A creation reads the new device's backend through its node;
            # a release probes its node for a holder.
            made = self.alloc.allocate(self.request(port))
            self.assertIsNotNone(self.alloc.vhost_backend(made))
            # The guest's device: from what creation read, no open.
            self.assertIsNotNone(self.alloc.vhost_backend(guest))
            self.assertEqual(guest, self.alloc.lookup(PORTS[0], SIM_VF))
            self.alloc.release(PORTS[port], SIM_VF)
        stop.set()
        opener.join(30)
        self.addDetail('rounds', content.text_content(
            '%d rounds of allocate/read/release in %.1f s; QEMU-like '
            'opens: %s' % (rounds, time.monotonic() - t0, counts)))
        self.assertGreater(counts['opens'], rounds)
        self.assertEqual((0, []), (counts['EBUSY'], counts['other errors']))
        self.alloc.release(PORTS[0], SIM_VF)
        self.assertEqual({}, self.devices())

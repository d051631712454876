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

"""The allocator on the real kernel, through a real privsep daemon.

The daemon (privsep-helper, CAP_NET_ADMIN only) reads the same
configuration file as the allocator: ``management_devices = vdpasim_net``
and two simulated VFs, one of which names an operator's device. Every
check reads the kernel back, mostly through iproute2's ``vdpa -j`` (the
reference client), not through nova-vdpa's own client.

One daemon serves the whole class: starting one costs seconds under TCG.
"""

import logging
import os
import threading
import time

import fixtures
from testtools import content

from nova_vdpa import allocator
from nova_vdpa import exception
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs
from nova_vdpa.privsep import vdpa as priv_vdpa
from tests.functional.allocator_base import AllocatorBedTestCase
from tests.functional.allocator_base import MAC
from tests.functional.allocator_base import OP_VF
from tests.functional.allocator_base import OPERATOR_DEVICE
from tests.functional.allocator_base import PORTS
from tests.functional.allocator_base import SIM_VF


class TestAllocator(AllocatorBedTestCase):

    def test_allocate_is_idempotent_and_release_too(self):
        req = self.request(0, mtu=1400, queue_pairs=4)
        a = self.alloc.allocate(req)
        name = 'nvdpa-' + PORTS[0]
        self.assertEqual({name: 'vdpasim_net'}, self.devices())
        self.assertEqual((MAC % 0, 1400), (self.config(name)['mac'],
                                           self.config(name)['mtu']))
        # vdpasim_net refuses max_vqp: none was sent, the default stands.
        self.assertNotIn('max_vq_pairs', self.config(name))
        self.assertEqual('vhost_vdpa', self.driver(name))
        self.assertEqual((name, 'vdpasim_net', True),
                         (a.name, a.mgmtdev, a.owned))
        self.assertTrue(os.path.exists(a.chardev))
        self.assertEqual(a.chardev, self.sysfs.chardev(name))

        # Again, and from a restarted nova-compute: the same device.
        self.assertEqual(a, self.alloc.allocate(req))
        self.assertEqual(a, self.allocator().allocate(req))
        self.assertEqual(a, self.alloc.lookup(PORTS[0], SIM_VF))
        self.assertEqual({name: 'vdpasim_net'}, self.devices())

        # A new MAC, nobody holding it: made again.
        b = self.alloc.allocate(self.request(0, mtu=1400, mac='fa:16:3e:7a:'
                                             '01:00'))
        self.assertEqual('fa:16:3e:7a:01:00', self.config(name)['mac'])
        self.assertEqual(b.chardev, self.sysfs.chardev(name))

        self.alloc.release(PORTS[0], SIM_VF)
        self.assertEqual({}, self.devices())
        self.alloc.release(PORTS[0], SIM_VF)
        self.assertIsNone(self.alloc.lookup(PORTS[0], SIM_VF))

    def test_operator_device_is_adopted_and_never_touched(self):
        self.run_cmd('vdpa', 'dev', 'add', 'name', OPERATOR_DEVICE,
                     'mgmtdev', 'vdpasim_net', 'mac', '02:00:00:0a:00:01')
        self.sysfs.bind(OPERATOR_DEVICE, sysfs.VHOST_VDPA)
        a = self.alloc.allocate(self.request(1, vf=OP_VF, mtu=9000))
        self.assertEqual((OPERATOR_DEVICE, False),
                         (a.name, a.owned))
        self.assertEqual(self.sysfs.chardev(OPERATOR_DEVICE), a.chardev)
        self.assertEqual(a, self.alloc.lookup(PORTS[1], OP_VF))
        # Another simulated VF on the same simulator does not adopt it.
        self.assertTrue(self.alloc.allocate(self.request(2)).owned)

        self.alloc.release(PORTS[1], OP_VF)
        self.alloc.release(PORTS[2], SIM_VF)
        self.assertEqual({OPERATOR_DEVICE: 'vdpasim_net'}, self.devices())
        self.assertEqual(('02:00:00:0a:00:01', 1500),
                         (self.config(OPERATOR_DEVICE)['mac'],
                          self.config(OPERATOR_DEVICE)['mtu']))

        # An operator's device on the wrong driver is refused, unchanged.
        self.sysfs.bind(OPERATOR_DEVICE, sysfs.VIRTIO_VDPA)
        e = self.assertRaises(exception.VdpaAdoptedDeviceNotBound,
                              self.alloc.allocate,
                              self.request(1, vf=OP_VF))
        self.assertIn('virtio_vdpa', str(e))
        self.assertEqual('virtio_vdpa', self.driver(OPERATOR_DEVICE))

    def test_privileged_side_refuses_what_is_not_ours(self):
        self.run_cmd('vdpa', 'dev', 'add', 'name', OPERATOR_DEVICE,
                     'mgmtdev', 'vdpasim_net')
        # Refused before escalation...
        for call in (lambda: priv_vdpa.delete_device(OPERATOR_DEVICE,
                                                     timeout=10),
                     lambda: priv_vdpa.bind_device(OPERATOR_DEVICE),
                     lambda: priv_vdpa.create_bound_device('opvdpa1',
                                                           'vdpasim_net')):
            self.assertRaises(exception.VdpaDeviceNotOurs, call)
        # ...and by the daemon itself, as a compromised caller reaches it.
        for call in (lambda: priv_vdpa._delete_device(OPERATOR_DEVICE, 5.0),
                     lambda: priv_vdpa._bind_device(OPERATOR_DEVICE),
                     lambda: priv_vdpa._create_bound_device(
                         'opvdpa1', 'vdpasim_net', None, None, None)):
            e = self.assertRaises(exception.VdpaDeviceNotOurs, call)
            self.assertIn('nvdpa-<port UUID>', str(e))
        self.assertEqual({OPERATOR_DEVICE: 'vdpasim_net'}, self.devices())
        self.assertEqual('virtio_vdpa', self.driver(OPERATOR_DEVICE))

    def test_held_device_is_not_released_and_nothing_waits(self):
        a = self.alloc.allocate(self.request(3))
        close = self.hold(a.chardev)
        e = self.assertRaises(exception.VdpaDeviceInUse, self.alloc.release,
                              PORTS[3], SIM_VF)
        # The daemon has no CAP_SYS_PTRACE: the exclusive open proves the
        # holder, /proc does not name it.
        self.assertIn('pid unknown', str(e))
        self.assertIn(a.name, self.devices())
        e = self.assertRaises(exception.VdpaStaleDeviceInUse,
                              self.alloc.allocate,
                              self.request(3, mtu=1280))
        self.assertIn('MTU 1280', str(e))
        close()
        self.alloc.release(PORTS[3], SIM_VF)
        self.assertEqual({}, self.devices())


class TestStuckDeletion(AllocatorBedTestCase):
    """A deletion stuck on a held chardev, and everything else meanwhile."""

    def test_reads_and_creates_fail_fast_with_a_typed_error(self):
        # oslo.privsep's client would log its own timeout: the test's
        # details, not the console.
        privsep_log = self.useFixture(fixtures.FakeLogger(
            name='oslo_privsep.comm', level=logging.WARNING))
        a = self.alloc.allocate(self.request(4))
        other = self.alloc.allocate(self.request(7))
        close = self.hold(a.chardev)

        def raw_delete():
            with netlink.VdpaClient() as c:
                c.delete_device(a.name)
        # A raw DEV_DEL, as a careless tool would send it: it waits in the
        # kernel, holding the vdpa lock, until the chardev is closed.
        deleter = threading.Thread(target=raw_delete, daemon=True)
        deleter.start()
        self.addCleanup(deleter.join, 60)
        self.addCleanup(close)
        self.wait_in_kernel(deleter)
        # The kernel unlinks the device from the bus before its driver's
        # removal waits: for the allocator it is gone already.
        self.assertIsNone(self.alloc.lookup(PORTS[4], SIM_VF))

        alloc = self.allocator(read_timeout=3)
        times = {}
        for label, call, error in (
                ('allocate, first', lambda: alloc.allocate(
                    self.request(5)), exception.VdpaKernelTimeout),
                ('allocate, again', lambda: alloc.allocate(
                    self.request(5)), exception.VdpaKernelTimeout),
                ('lookup', lambda: alloc.lookup(PORTS[7], SIM_VF),
                 exception.VdpaKernelTimeout),
                ('release', lambda: alloc.release(PORTS[7]),
                 exception.VdpaKernelTimeout),
                # The daemon's deadline for a create (DAEMON_TIMEOUT).
                ('privsep create', lambda: priv_vdpa.create_bound_device(
                    allocator.device_name(PORTS[6]), 'vdpasim_net'),
                 exception.VdpaKernelTimeout)):
            t0 = time.monotonic()
            self.assertRaises(error, call)
            times[label] = time.monotonic() - t0
        self.addDetail('seconds', content.text_content(repr(times)))

        close()
        deleter.join(60)
        self.assertFalse(deleter.is_alive())
        # The stuck read ends just after the deletion; until it has, calls
        # still fail at once.
        for _ in range(600):
            try:
                alloc.owned_devices()
                break
            except exception.VdpaKernelTimeout:
                time.sleep(0.1)
        # The late create in the daemon completes once the lock is free;
        # until it has, the daemon fails creates at once, then the
        # allocator recovers and makes what is missing.
        for _ in range(600):
            try:
                b = alloc.allocate(self.request(5))
                break
            except exception.VdpaKernelTimeout:
                time.sleep(0.1)
        else:
            self.fail('the daemon still refuses creates after 60 s')
        self.assertEqual(b, alloc.lookup(PORTS[5], SIM_VF))
        self.assertEqual(other, alloc.lookup(PORTS[7], SIM_VF))
        # The daemon's thread, stuck in the kernel past the deadline,
        # finishes the create it was given; allocate() for that port finds
        # it by name and makes it match the port.
        late = allocator.device_name(PORTS[6])
        for _ in range(600):
            if late in self.devices():
                break
            time.sleep(0.1)
        self.assertEqual({b.name, other.name, late}, set(self.devices()))
        # The daemon answered the create itself, typed, at its own
        # deadline: the caller's privsep channel never timed out.
        self.assertNotIn('Timeout while executing a command',
                         privsep_log.output)

    def wait_in_kernel(self, thread):
        """Wait until the deleter sleeps in vhost_vdpa's removal."""
        task = '/proc/%d/task/%d/wchan' % (os.getpid(), thread.native_id)
        for _ in range(600):
            with open(task) as f:
                if 'vhost_vdpa' in f.read():
                    return
            time.sleep(0.1)
        self.fail('the raw deletion never waited in the kernel')

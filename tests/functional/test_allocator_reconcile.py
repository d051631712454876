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

"""Start-up reconciliation on the real kernel, through a real daemon.

The kernel forgets every vDPA device when the vdpa modules go (a host
reboot does the same); :meth:`Allocator.reconcile` makes the expected
ones again, deletes orphans of ours, leaves held ones and never touches
an operator's device. The unit tests' fake kernel
(tests/unit/test_allocator.py TestReconcile) is checked against this.
"""

import os
import subprocess

from nova_vdpa import allocator
from nova_vdpa.kernel import sysfs
from tests.functional.allocator_base import AllocatorBedTestCase
from tests.functional.allocator_base import MAC
from tests.functional.allocator_base import OP_VF
from tests.functional.allocator_base import OPERATOR_DEVICE
from tests.functional.allocator_base import PORTS
from tests.functional import base

#: load order of the bed (tools/testbed.py GUEST_MODULES): virtio_vdpa
#: first, so a new device autoprobes to the wrong driver
MODULES = ['vdpa', 'virtio_vdpa', 'vhost_vdpa', 'vdpa_sim', 'vdpa_sim_net']


class TestReconcile(AllocatorBedTestCase):

    def modprobe(self, *argv):
        subprocess.run(['modprobe'] + list(argv), check=True, timeout=300)

    def check_device(self, req):
        name = allocator.device_name(req.port_id)
        config = self.config(name)
        self.assertEqual((req.mac, req.mtu or 1500),
                         (config['mac'], config['mtu']))
        self.assertEqual(sysfs.VHOST_VDPA, self.driver(name))
        self.assertTrue(os.path.exists(self.sysfs.chardev(name)))

    def test_kernel_state_wiped_by_a_module_reload_is_made_again(self):
        reqs = [self.request(0, mtu=1400), self.request(1, mtu=9000),
                self.request(2)]
        for req in reqs:
            self.alloc.allocate(req)
        names = {allocator.device_name(r.port_id) for r in reqs}
        self.assertEqual(names, set(self.devices()))
        # The daemon's and the allocator's sockets stay open meanwhile, as
        # nova-compute's would across an unload.
        for d in self.client.list_devices():
            self.client.delete_device(d.name)
        self.modprobe('-r', 'vdpa_sim_net', 'vdpa_sim', 'vhost_vdpa',
                      'virtio_vdpa', 'vdpa')
        self.assertFalse(os.path.exists('/sys/bus/vdpa'))
        for m in MODULES:
            base.modprobe(m)
        self.assertEqual({}, self.devices())

        # A restarted nova-compute, as after a reboot.
        r = self.allocator().reconcile(reqs)
        self.assertEqual((sorted(names), [], [], [], {}),
                         (sorted(r.created), r.kept, r.deleted, r.held,
                          r.failed))
        self.assertEqual(names, set(self.devices()))
        for req in reqs:
            self.check_device(req)
        # The long-lived allocator follows the reloaded family too.
        r = self.alloc.reconcile(reqs)
        self.assertEqual(sorted(names), sorted(r.kept))

    def test_orphans_deleted_operator_kept_held_left(self):
        expected = self.request(0, mtu=1400)
        self.alloc.allocate(expected)
        orphan = self.alloc.allocate(self.request(1))
        held = self.alloc.allocate(self.request(2))
        close = self.hold(held.chardev)
        # Half made, as a SIGKILL leaves it: created, never bound (the bed
        # autoprobes new devices to virtio_vdpa).
        unbound = allocator.device_name(PORTS[3])
        self.run_cmd('vdpa', 'dev', 'add', 'name', unbound, 'mgmtdev',
                     'vdpasim_net', 'mac', MAC % 3)
        self.assertEqual('virtio_vdpa', self.driver(unbound))
        # Killed mid-allocation of an expected port: driver_override
        # written, virtio_vdpa unbound, never probed.
        half = self.request(4)
        half_name = allocator.device_name(half.port_id)
        self.run_cmd('vdpa', 'dev', 'add', 'name', half_name, 'mgmtdev',
                     'vdpasim_net', 'mac', half.mac)
        dev = '/sys/bus/vdpa/devices/%s/' % half_name
        with open(dev + 'driver_override', 'w') as f:
            f.write('vhost_vdpa')
        with open('/sys/bus/vdpa/drivers/virtio_vdpa/unbind', 'w') as f:
            f.write(half_name)
        self.assertFalse(os.path.exists(dev + 'driver'))
        # An operator's device, and one with our prefix but no UUID.
        self.run_cmd('vdpa', 'dev', 'add', 'name', OPERATOR_DEVICE,
                     'mgmtdev', 'vdpasim_net', 'mac', '02:00:00:0a:00:01')
        self.sysfs.bind(OPERATOR_DEVICE, sysfs.VHOST_VDPA)
        self.run_cmd('vdpa', 'dev', 'add', 'name', 'nvdpa-mine',
                     'mgmtdev', 'vdpasim_net')
        adopted = self.request(5, vf=OP_VF)

        r = self.alloc.reconcile([expected, half, adopted])
        self.assertEqual(
            ([half_name], sorted([allocator.device_name(PORTS[0]),
                                  OPERATOR_DEVICE]),
             sorted([orphan.name, unbound]), [held.name], {}),
            (r.created, sorted(r.kept), sorted(r.deleted), r.held,
             r.failed))
        self.assertEqual(
            {allocator.device_name(PORTS[0]), held.name, half_name,
             OPERATOR_DEVICE, 'nvdpa-mine'}, set(self.devices()))
        self.check_device(expected)
        self.check_device(half)
        self.assertEqual(('02:00:00:0a:00:01', 'vhost_vdpa'),
                         (self.config(OPERATOR_DEVICE)['mac'],
                          self.driver(OPERATOR_DEVICE)))
        self.assertEqual('virtio_vdpa', self.driver('nvdpa-mine'))
        # Once its holder is gone, the next reconcile deletes it.
        close()
        r = self.alloc.reconcile([expected, half, adopted])
        self.assertEqual(([held.name], []), (r.deleted, r.held))

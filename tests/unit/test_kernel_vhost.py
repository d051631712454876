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

"""A device's vhost backend (live-migration support), on the fake tree.

The real kernel's answers are checked in
tests/functional/test_kernel_client.py
(``TestVhostBackend``).
"""

import errno
import os

from nova_vdpa import exception
from nova_vdpa.kernel import lifecycle
from nova_vdpa.kernel import vhost
from nova_vdpa.privsep import migration as priv_migration
from nova_vdpa.privsep import vdpa as priv_vdpa
from tests.unit import base

CTRL_VQ = 1 << vhost.VIRTIO_NET_F_CTRL_VQ


class TestIoctlNumbers(base.TestCase):

    def test_the_kernels_numbers(self):
        # include/uapi/linux/vhost.h, as the kernel's _IOR computes them
        self.assertEqual(0x8008af26, vhost.VHOST_GET_BACKEND_FEATURES)
        self.assertEqual(0x8004af7a, vhost.VHOST_VDPA_GET_AS_NUM)
        self.assertEqual(0x8004af81, vhost.VHOST_VDPA_GET_GROUP_NUM)


class TestMigrationBlocker(base.TestCase):

    def test_suspend_and_isolated_cvq(self):
        self.assertIsNone(vhost.Backend(0x3e, 2, 2).migration_blocker(
            CTRL_VQ))

    def test_no_suspend(self):
        why = vhost.Backend(0x0e, 2, 2).migration_blocker(CTRL_VQ)
        self.assertEqual('the device cannot be suspended', why)

    def test_cvq_not_isolated(self):
        for backend in (vhost.Backend(0x3e, 1, 2), vhost.Backend(0x3e, 2, 1),
                        vhost.Backend(0x36, 2, 2)):  # no IOTLB_ASID
            why = backend.migration_blocker(CTRL_VQ)
            self.assertIn('control virtqueue', why)

    def test_no_cvq_needs_no_isolation(self):
        self.assertIsNone(vhost.Backend(0x3e, 1, 1).migration_blocker(0))

    def test_unknown_features_assume_a_cvq(self):
        self.assertIsNotNone(vhost.Backend(0x3e, 1, 1).migration_blocker(
            None))


class TestBackend(base.KernelTestCase):

    def _device(self, name='vd0'):
        return lifecycle.create_device(self.client, self.sysfs, name,
                                       'vdpasim_net')

    def test_read(self):
        chardev = self._device()
        self.assertEqual(vhost.Backend(0x17e, 2, 2),
                         self.sysfs.backend(chardev, 'vd0'))
        # closed again: the device can be opened by the next process
        self.assertFalse(self.sysfs.is_open(chardev, 'vd0'))

    def test_held_node(self):
        chardev = self._device()
        self.kernel.open_chardev('vd0')
        e = self.assertRaises(exception.VdpaSysfsError, self.sysfs.backend,
                              chardev, 'vd0')
        self.assertIn('a process holds it', str(e))
        self.assertIn('vd0', str(e))

    def test_not_a_vhost_node(self):
        path = self.kernel.root + '/not-a-node'
        open(path, 'w').close()
        # No device name: no device number to check, the ioctl answers.
        e = self.assertRaises(exception.VdpaSysfsError, self.sysfs.backend,
                              path)
        self.assertIn('cannot read the vhost backend', str(e))
        self.assertIn(os.strerror(errno.ENOTTY), str(e))


class TestPrivileged(base.KernelTestCase):

    def setUp(self):
        super().setUp()
        base.privsep_in_process(self, self.kernel)

    def test_read_ours(self):
        name = priv_vdpa.device_name('11111111-1111-1111-1111-111111111111')
        self._create(name)
        self.assertEqual(vhost.Backend(0x17e, 2, 2),
                         priv_migration.read_backend(name))

    def _create(self, name):
        lifecycle.create_device(self.client, self.sysfs, name, 'vdpasim_net')

    def test_refuses_an_operators_device(self):
        self._create('vd0')
        e = self.assertRaises(exception.VdpaDeviceNotOurs,
                              priv_migration.read_backend, 'vd0')
        self.assertIn('read the vhost backend of', str(e))

    def test_refuses_a_management_device_not_allowed(self):
        base.privsep_in_process(self, self.kernel,
                                management_devices=['pci/0000:06:00.2'])
        name = priv_vdpa.device_name('22222222-2222-2222-2222-222222222222')
        self._create(name)
        self.assertRaises(exception.VdpaDeviceNotOurs,
                          priv_migration.read_backend, name)

    def test_missing_device(self):
        name = priv_vdpa.device_name('33333333-3333-3333-3333-333333333333')
        self.assertRaises(exception.VdpaDeviceNotFound,
                          priv_migration.read_backend, name)

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

"""What a vhost-vdpa node says of its device's migration support.

QEMU (>= 8.0) migrates a vhost-vdpa net device live by switching it to
shadow virtqueues while the migration runs. That needs two things of the
device, and the kernel tells them only through ioctls on the device's
``/dev/vhost-vdpa-N`` node (no vdpa netlink attribute or sysfs file
carries them):

* ``VHOST_BACKEND_F_SUSPEND`` among the backend features
  (``VHOST_GET_BACKEND_FEATURES``): the device can be stopped with its
  ring state readable;
* a control virtqueue in an address space of its own: the backend offers
  ``VHOST_BACKEND_F_IOTLB_ASID`` and the device has at least two virtqueue
  groups (``VHOST_VDPA_GET_GROUP_NUM``) and two address spaces
  (``VHOST_VDPA_GET_AS_NUM``). A device without ``VIRTIO_NET_F_CTRL_VQ``
  needs no isolation.

The node admits one opener, so these are read only from a device no VMM
holds (the caller opens it: :meth:`nova_vdpa.kernel.sysfs.VdpaSysfs.backend`).
No library wraps these ioctls (pyroute2 speaks netlink only), hence the
few lines of ``fcntl`` here.
"""

import dataclasses
import fcntl
import struct
import typing as ty

_IOC_READ = 2
VHOST_VIRTIO = 0xAF


def _ior(nr: int, size: int) -> int:
    """The kernel's ``_IOR(VHOST_VIRTIO, nr, size)``."""
    return (_IOC_READ << 30) | (size << 16) | (VHOST_VIRTIO << 8) | nr


#: ``_IOR(VHOST_VIRTIO, 0x26, __u64)``
VHOST_GET_BACKEND_FEATURES = _ior(0x26, 8)
#: ``_IOR(VHOST_VIRTIO, 0x7A, unsigned int)``
VHOST_VDPA_GET_AS_NUM = _ior(0x7A, 4)
#: ``_IOR(VHOST_VIRTIO, 0x81, unsigned int)``
VHOST_VDPA_GET_GROUP_NUM = _ior(0x81, 4)

VHOST_BACKEND_F_IOTLB_ASID = 3
VHOST_BACKEND_F_SUSPEND = 4
VIRTIO_NET_F_CTRL_VQ = 17

#: ``fcntl.ioctl``'s shape: (fd, request, buffer) -> filled buffer
Ioctl = ty.Callable[[int, int, bytes], bytes]


@dataclasses.dataclass(frozen=True)
class Backend:
    """A device's vhost backend, as its node reports it.

    :param features: the ``VHOST_BACKEND_F_*`` bits.
    :param vq_groups: virtqueue groups.
    :param address_spaces: address spaces (ASIDs).
    """

    features: int
    vq_groups: int
    address_spaces: int

    @property
    def can_suspend(self) -> bool:
        return bool(self.features & (1 << VHOST_BACKEND_F_SUSPEND))

    @property
    def can_isolate_cvq(self) -> bool:
        return (bool(self.features & (1 << VHOST_BACKEND_F_IOTLB_ASID))
                and self.vq_groups >= 2 and self.address_spaces >= 2)

    def migration_blocker(self, device_features: int | None) -> str | None:
        """Why QEMU could not migrate the device live; None if it can.

        :param device_features: the virtio feature bits the device offers
            (``None``: unknown, so a control virtqueue is assumed).
        """
        if not self.can_suspend:
            return 'the device cannot be suspended'
        has_cvq = (device_features is None
                   or bool(device_features & (1 << VIRTIO_NET_F_CTRL_VQ)))
        if has_cvq and not self.can_isolate_cvq:
            return ('the control virtqueue cannot get an address space of '
                    'its own (%d virtqueue groups, %d address spaces)'
                    % (self.vq_groups, self.address_spaces))
        return None


def read_backend(fd: int, ioctl: Ioctl = fcntl.ioctl) -> Backend:
    """Read the backend of the node open on ``fd``.

    :raises: OSError from the kernel (ENOTTY: not a vhost-vdpa node).
    """
    features, = struct.unpack(
        '=Q', ioctl(fd, VHOST_GET_BACKEND_FEATURES, bytes(8)))
    groups, = struct.unpack('=I', ioctl(fd, VHOST_VDPA_GET_GROUP_NUM,
                                        bytes(4)))
    spaces, = struct.unpack('=I', ioctl(fd, VHOST_VDPA_GET_AS_NUM, bytes(4)))
    return Backend(features, groups, spaces)

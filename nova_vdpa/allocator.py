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

"""The allocator: one vDPA device per vdpa port, read back from the kernel.

This room decides which management device serves a port's VF, names the
port's device, creates, adopts, looks up and releases it. It imports
nothing of Nova, so the same code runs under nova-compute and in the test
bed; privileged work goes through :mod:`nova_vdpa.privsep.vdpa` only.

Decisions, and what the kernel does that they rest on:

* **Names.** A port's device is ``nvdpa-<Neutron port UUID>`` (42
  characters, inside the 63 :mod:`nova_vdpa.kernel.validate` allows). The
  kernel itself is the record of what is allocated: there is no state
  file, and a restarted nova-compute finds its devices by name.
* **Management device.** A VF's devices are made on ``pci/<VF address>``
  (mlx5 registers one management device per VF and takes one device on
  it, answering ENOSPC to a second). The test-only ``simulated_vfs``
  option maps VF addresses to a simulator such as ``vdpasim_net``.
* **Adoption.** A VF that carries a device without our prefix (made by an
  operator for upstream Nova) is used as it is and never modified or
  deleted. For a real VF, "the VF's device" is a vdpa device whose sysfs
  parent is the VF's PCI device (``/sys/bus/pci/devices/<VF>/<device>``),
  found without listing every device; for a simulated VF it is the device
  its ``simulated_vfs`` entry names after ``@``. An adopted device must
  already be bound to vhost_vdpa: nova-vdpa does not rebind it.
* **Idempotence.** Allocating again returns the same device; a device of
  ours with another MAC, MTU, queue-pair count or management device and
  no holder is deleted and made again; with a holder the caller gets
  :class:`~nova_vdpa.exception.VdpaStaleDeviceInUse`. Releasing a device
  that is gone is a success.
* **Queue pairs.** What the caller asks for, capped by the management
  device's ``max_supported_vqs`` ((vqs - 1) // 2 pairs: one queue is the
  control queue). A management device that does not offer F_MQ gets no
  ``max_vqp`` attribute (vdpasim_net answers EOPNOTSUPP to it), and one
  that still refuses it is asked again without it; both are logged.
* **Deadlines.** A deletion that waits for a holder keeps the kernel's
  vdpa lock, and every vdpa netlink request waits behind it in
  uninterruptible sleep. Every kernel read here therefore runs on one
  reader thread with a deadline; while a read is stuck, later calls fail
  at once with :class:`~nova_vdpa.exception.VdpaKernelTimeout` instead of
  queueing behind it, and nothing privileged is attempted.
* **Serialisation.** Allocation is serialised per VF and per port, release
  per port (oslo.concurrency in-process locks, taken VF then port).
"""

import dataclasses
from typing import Callable, Mapping, Sequence

from nova_vdpa.kernel import lifecycle
from nova_vdpa.kernel import model
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs as sysfs_mod
from nova_vdpa.privsep import vdpa as priv_vdpa

#: prefix of every device nova-vdpa creates (then the port's UUID)
DEVICE_PREFIX = priv_vdpa.DEVICE_PREFIX

#: seconds a kernel read may take before the caller gets an error
DEFAULT_READ_TIMEOUT = 10.0


def device_name(port_id: str) -> str:
    """The name of the vDPA device of a Neutron port.

    :param port_id: the port's UUID, in any form :class:`uuid.UUID` reads.
    :returns: ``nvdpa-`` and the UUID in canonical lowercase form.
    :raises: VdpaPortRequestInvalid when ``port_id`` is not a UUID.
    """
    return priv_vdpa.device_name(port_id)


def is_ours(name: str) -> bool:
    """Whether nova-vdpa made ``name``: our prefix and a canonical UUID."""
    return priv_vdpa.is_ours(name)


@dataclasses.dataclass(frozen=True)
class PortRequest:
    """What a vdpa port needs from its device.

    :ivar port_id: the Neutron port's UUID.
    :ivar vf_address: the VF Nova claimed for it (binding profile
        ``pci_slot``), ``0000:08:00.2``.
    :ivar mac: the port's MAC address.
    :ivar mtu: the network's MTU; None leaves the driver's default.
    :ivar queue_pairs: queue pairs the flavor or image ask for; None leaves
        the driver's default.
    """

    port_id: str
    vf_address: str
    mac: str
    mtu: int | None = None
    queue_pairs: int | None = None


@dataclasses.dataclass(frozen=True)
class Allocation:
    """A port's device as the kernel has it now.

    :ivar name: the vDPA device's name.
    :ivar mgmtdev: its management device handle.
    :ivar chardev: its ``/dev/vhost-vdpa-N`` node.
    :ivar owned: False for an operator's device, adopted as it is (never
        modified or deleted by nova-vdpa).
    :ivar device: what ``vdpa dev show`` reports (``max_vq_size``...).
    :ivar config: its virtio-net config (``mac``, ``mtu``,
        ``max_vq_pairs``, features).
    """

    name: str
    mgmtdev: str
    chardev: str
    owned: bool
    device: model.VdpaDevice
    config: model.DeviceConfig


class Allocator:
    """Creates, adopts, looks up and releases the devices of vdpa ports.

    :param management_devices: handles that may be used; empty allows every
        management device (``[nova_vdpa] management_devices``). The
        privsep daemon enforces its own copy of the option.
    :param simulated_vfs: TEST ONLY (``[nova_vdpa] simulated_vfs``): VF
        address -> ``<mgmtdev>`` or ``<mgmtdev>@<operator's device>``.
    :param delete_timeout: seconds a deletion may wait for the kernel.
    :param read_timeout: seconds a kernel read may take.
    :param client_factory: builds the reader thread's netlink client.
    :param sysfs: sysfs access (tests pass a fake kernel's).
    :raises: VdpaInvalidArgument for a malformed option value.
    """

    def __init__(self, management_devices: Sequence[str] = (),
                 simulated_vfs: Mapping[str, str] | None = None,
                 delete_timeout: float = lifecycle.DEFAULT_DELETE_TIMEOUT,
                 read_timeout: float = DEFAULT_READ_TIMEOUT,
                 client_factory: Callable[[], netlink.VdpaClient] =
                 netlink.VdpaClient,
                 sysfs: sysfs_mod.VdpaSysfs | None = None) -> None:
        raise NotImplementedError()

    def close(self) -> None:
        """Stop the reader thread and close its netlink socket."""
        raise NotImplementedError()

    def management_device(self, vf_address: str) -> str:
        """The management device that serves ``vf_address``.

        :returns: ``pci/<VF address>``, or the ``simulated_vfs`` mapping.
        :raises: VdpaManagementDeviceNotAllowed when ``management_devices``
            leaves it out; VdpaPortRequestInvalid for a bad address.
        """
        raise NotImplementedError()

    def vf_management_devices(self) -> dict[str, model.ManagementDevice]:
        """Every VF that can get a network vDPA device now (inventory).

        One management device dump: ``pci/<address>`` handles that support
        the net class and are allowed, keyed by address (a PF that is a
        management device is listed too; Nova's ``[pci] device_spec``
        decides what is offered), plus simulated VFs whose management
        device exists.

        :returns: VF address -> its management device.
        :raises: VdpaKernelTimeout, VdpaNotLoaded
        """
        raise NotImplementedError()

    def allocate(self, request: PortRequest) -> Allocation:
        """Make sure the port has its device, bound to vhost_vdpa.

        Idempotent, serialised per VF. The VF's operator device, if any, is
        adopted; otherwise ours is created (or recreated when stale).

        :raises: VdpaPortRequestInvalid, VdpaManagementDeviceNotAllowed,
            VdpaAdoptedDeviceNotBound, VdpaStaleDeviceInUse,
            VdpaKernelTimeout, and the kernel's typed errors
            (VdpaNoSpace: the VF already has a device;
            VdpaManagementDeviceNotFound: no vDPA on that VF).
        """
        raise NotImplementedError()

    def lookup(self, port_id: str, vf_address: str) -> Allocation | None:
        """The port's device now, ours or adopted; None if it has none.

        Read-only; costs the same whatever the number of devices.

        :raises: VdpaPortRequestInvalid, VdpaKernelTimeout,
            VdpaAdoptedDeviceNotBound
        """
        raise NotImplementedError()

    def release(self, port_id: str, vf_address: str | None = None) -> None:
        """Delete the port's device if it is ours; idempotent.

        An adopted (operator's) device is never touched. A missing device
        is a success.

        :param vf_address: unused but for messages; the device is found
            by its name.
        :raises: VdpaDeviceInUse (a process holds it), VdpaDeleteTimeout,
            VdpaKernelTimeout, VdpaDeviceNotOurs
        """
        raise NotImplementedError()

    def owned_devices(self) -> list[model.VdpaDevice]:
        """Every device with our prefix (one dump), for reconciliation.

        :raises: VdpaKernelTimeout
        """
        raise NotImplementedError()

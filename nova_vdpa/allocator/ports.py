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

"""What a port asks of the allocator, and what it gets back.

The names (``nvdpa-<port UUID>``), the request and the allocation, free of
any kernel call: the allocator (:mod:`nova_vdpa.allocator.allocator`), the
VIF driver and the test bed all speak in these.
"""

import dataclasses
from typing import Sequence

from nova_vdpa import exception
from nova_vdpa.kernel import model
from nova_vdpa.privsep import vdpa as priv_vdpa

#: prefix of every device nova-vdpa creates (then the port's UUID)
DEVICE_PREFIX = priv_vdpa.DEVICE_PREFIX


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


def parse_simulated_vfs(entries: Sequence[str]) -> dict[str, str]:
    """``simulated_vfs`` option entries -> the mapping Allocator takes.

    :param entries: ``<VF address>=<mgmtdev>[@<device>]`` strings.
    :raises: VdpaInvalidArgument naming the bad entry.
    """
    out = {}
    for entry in entries:
        vf, sep, target = entry.partition('=')
        if not sep or not vf.strip() or not target.strip():
            raise exception.VdpaInvalidArgument(
                device='-', mgmtdev='-', attribute='simulated_vfs',
                reason='entry %r is not <VF address>=<management device>'
                '[@<device>]' % entry)
        out[vf.strip()] = target.strip()
    return out


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

    :ivar chardev: its ``/dev/vhost-vdpa-N`` node.
    :ivar owned: False for an operator's device, adopted as it is (never
        modified or deleted by nova-vdpa).
    :ivar device: what ``vdpa dev show`` reports (its name, management
        device, ``max_vq_size``...).
    :ivar config: its virtio-net config (``mac``, ``mtu``,
        ``max_vq_pairs``, features).
    """

    chardev: str
    owned: bool
    device: model.VdpaDevice
    config: model.DeviceConfig

    @property
    def name(self) -> str:
        """The vDPA device's name."""
        return self.device.name

    @property
    def mgmtdev(self) -> str:
        """Its management device handle."""
        return self.device.mgmtdev


@dataclasses.dataclass
class ReconcileResult:
    """What :meth:`Allocator.reconcile` did, device by device.

    :ivar created: device names made (or made again) for expected ports.
    :ivar kept: expected ports whose device was already right (adopted
        operator devices included), by device name.
    :ivar deleted: devices of ours for no expected port, no holder.
    :ivar held: devices of ours for no expected port that a process
        holds: left in place.
    :ivar failed: port id or device name -> the error message.
    """

    created: list[str] = dataclasses.field(default_factory=list)
    kept: list[str] = dataclasses.field(default_factory=list)
    deleted: list[str] = dataclasses.field(default_factory=list)
    held: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)

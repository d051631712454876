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

"""Which VFs Nova's PCI inventory reports as ``dev_type`` vdpa.

Nova 34.0.0 types a VF ``vdpa`` only when a vdpa node device names it as
parent (``Host._get_pcidev_info``), reads that once and caches it for the
life of nova-compute (``LibvirtDriver._get_pci_passthrough_devices``).
With devices created per port there is nothing to see before the first
boot, so the driver keeps Nova's cached scan for what it is good at (the
PCI tree: VFs, PFs, NUMA nodes, capabilities, which change only with
``sriov_numvfs``, and which Nova reads only at start anyway) and
re-types VFs at every periodic update from the kernel's management
devices, which are read fresh each time (one netlink dump).

A VF is reported as ``vdpa`` when its management device can create net
vDPA devices now and is listed in ``[nova_vdpa] management_devices``
(an empty list types no VF: loading ``mlx5_vdpa`` does not turn every
mlx5 VF of ``[pci] device_spec`` into a vdpa VF), when it carries a
device we made, or when Nova already typed it so (an operator's device).
A VF Nova's PCI tracker has claimed or allocated as ``type-VF`` (given to
a ``direct`` port) stays ``type-VF`` (:func:`vfs_in_use`). ``[pci]
device_spec`` is applied by Nova's PCI tracker to what we return, as for
any device.

When the kernel cannot answer (vdpa modules not loaded, a read past its
deadline) the driver reports the rest of the inventory with the last good
typing (:class:`LastTyping`): one WARNING when that starts, one INFO when
the kernel answers again, nothing in between.

Nova 34.0.0's resource tracker takes the PCI inventory in once, when it
sets up its PCI tracker at the first resource update of the process
(``ResourceTracker._setup_pci_tracker``); later answers are computed and
logged but reach Nova's PCI tracker only after a restart of nova-compute.
"""

import functools
import threading
import typing as ty

from oslo_log import log as logging
from oslo_serialization import jsonutils

from nova_vdpa import exception

LOG = logging.getLogger(__name__)

#: nova.objects.fields.PciDeviceType.SRIOV_VF / VDPA
SRIOV_VF = 'type-VF'
VDPA = 'vdpa'
#: nova.objects.fields.PciDeviceStatus CLAIMED / ALLOCATED
IN_USE = frozenset({'claimed', 'allocated'})


def vfs_in_use(pci_devices: ty.Iterable[ty.Any]) -> set[str]:
    """VFs Nova's PCI tracker holds for a guest as ``type-VF``.

    :param pci_devices: this host's ``nova.objects.PciDevice`` objects.
    :returns: the PCI addresses of those claimed or allocated as VFs.
    """
    return {dev.address for dev in pci_devices
            if dev.dev_type == SRIOV_VF and dev.status in IN_USE}


class LastTyping:
    """The VFs typed vdpa by the last good kernel read, and its state.

    Memory of one answer for the periods the kernel cannot give one, not
    a record of devices: the kernel is read again at every period.
    """

    def __init__(self) -> None:
        self._vfs: frozenset[str] = frozenset()
        self._error: str | None = None
        self._lock = threading.Lock()

    def read(self, vfs: ty.Collection[str]) -> None:
        """The kernel answered: remember ``vfs``; say once it is back."""
        with self._lock:
            self._vfs = frozenset(vfs)
            error, self._error = self._error, None
        if error is not None:
            LOG.info('The kernel answers again: %d VFs typed vdpa in the '
                     'PCI inventory (it failed with: %s)', len(vfs), error)

    def failed(self, error: exception.NovaVdpaException) -> set[str]:
        """The kernel did not answer: the last good VFs, warned once.

        :returns: a copy of the VFs of the last good read (none before).
        """
        text = str(error)
        with self._lock:
            changed = type(error).__name__ != self._kind()
            self._error = '%s: %s' % (type(error).__name__, text)
            vfs = set(self._vfs)
        if changed:
            LOG.warning('vdpa typing of the PCI inventory cannot be read '
                        'from the kernel (%s): reporting the rest of the '
                        'inventory with the last good typing (%d VFs) until '
                        'it answers', text, len(vfs))
        return vfs

    def _kind(self) -> str | None:
        return self._error.partition(':')[0] if self._error else None

    @property
    def error(self) -> str | None:
        """Why the last read failed, or None when it succeeded."""
        return self._error


def mark_vdpa_vfs(pci_devices: str, vdpa_vfs: ty.Collection[str]) -> str:
    """Re-type the VFs in Nova's PCI inventory that can serve vdpa ports.

    :param pci_devices: the JSON list Nova's
        ``_get_pci_passthrough_devices`` returns.
    :param vdpa_vfs: PCI addresses of the VFs that can carry a vDPA device.
    :returns: the same JSON list, those VFs with ``dev_type`` vdpa.
    """
    return _marked(pci_devices, frozenset(vdpa_vfs))


# Nova's inventory is one cached string and the VFs rarely change between
# two periodic updates: the last answer is kept rather than parsing and
# writing a JSON document of every PCI device again (most of this
# function's cost at 1,024 VFs). Both inputs are immutable, so the
# answer cannot go stale.
@functools.lru_cache(maxsize=1)
def _marked(pci_devices: str, vdpa_vfs: frozenset[str]) -> str:
    devices = jsonutils.loads(pci_devices)
    for dev in devices:
        if dev.get('dev_type') == SRIOV_VF and dev.get('address') in vdpa_vfs:
            dev['dev_type'] = VDPA
    return jsonutils.dumps(devices)

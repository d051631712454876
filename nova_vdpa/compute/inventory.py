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
vDPA devices now, when it carries a device we made, or when Nova already
typed it so (an operator's device). ``[pci] device_spec`` is applied by
Nova's PCI tracker to what we return, as for any device.
"""

import functools
import typing as ty

from oslo_serialization import jsonutils

#: nova.objects.fields.PciDeviceType.SRIOV_VF / VDPA
SRIOV_VF = 'type-VF'
VDPA = 'vdpa'


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

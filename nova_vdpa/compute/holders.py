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

"""Which libvirt guest holds a vhost-vdpa character device.

The privsep daemon runs without CAP_SYS_PTRACE (deliberately), so it cannot
read QEMU's file table and reports a held device with pid "unknown".
libvirt knows: QEMU holds the chardev of every ``<interface type='vdpa'>``
in a running domain's XML. Nova names its domains after instances and
gives them the instance's UUID.
"""

import dataclasses

from nova.virt.libvirt import config as vconfig


@dataclasses.dataclass(frozen=True)
class Holder:
    """A running libvirt domain whose XML uses a chardev.

    :param domain: the libvirt domain name.
    :param uuid: the domain's UUID (the instance UUID for Nova's guests).
    """

    domain: str
    uuid: str


def held(host: object) -> dict[str, list[Holder]]:
    """Every chardev a running domain's vdpa interface names, one listing.

    :param host: Nova's ``nova.virt.libvirt.host.Host``.
    :returns: ``/dev/vhost-vdpa-N`` -> the domains that name it.
    """
    out: dict[str, list[Holder]] = {}
    for guest in host.list_guests(only_running=True):  # type: ignore
        names = {dev.source_dev for dev in guest.get_all_devices(
            vconfig.LibvirtConfigGuestInterface)
            if dev.net_type == 'vdpa' and dev.source_dev}
        for chardev in names:
            out.setdefault(chardev, []).append(Holder(guest.name,
                                                      guest.uuid))
    return out


def find(host: object, chardev: str) -> list[Holder]:
    """Return the running domains with a vdpa interface on ``chardev``.

    :param host: Nova's ``nova.virt.libvirt.host.Host``.
    :param chardev: ``/dev/vhost-vdpa-N``.
    :returns: the holders; empty when no domain names the chardev (then a
        process outside libvirt holds it, or none does).
    """
    return held(host).get(chardev, [])

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

"""Every private Nova name nova-vdpa overrides or relies on, in one place.

Each entry was checked against :data:`NOVA_RELEASE`. A Nova upgrade that
renames or removes one of them would otherwise fail quietly (an override
that is never called, an attribute that is never read), so
:func:`check` runs when the driver starts and refuses to start instead.
So does :func:`check_concurrency_mode`, for the one mode of Nova's we
cannot run in: eventlet.
"""

import dataclasses
import importlib
import typing as ty

import nova.utils as nova_utils
from oslo_log import log as logging

from nova_vdpa import exception

LOG = logging.getLogger(__name__)

#: The Nova release every entry below was read against.
NOVA_RELEASE = '34.0.0'


@dataclasses.dataclass(frozen=True)
class PrivateName:
    """A private member of a Nova class that we override or use.

    :param module: the module defining ``cls``.
    :param cls: the class name.
    :param name: the member name.
    :param why: what we do with it.
    :param on_instance: the member is set in ``__init__``, so it is checked
        on the driver object rather than on the class.
    """

    module: str
    cls: str
    name: str
    why: str
    on_instance: bool = False


PRIVATE_NAMES: tuple[PrivateName, ...] = (
    PrivateName(
        'nova.virt.libvirt.driver', 'LibvirtDriver',
        '_get_pci_passthrough_devices',
        'overridden: types VFs whose management device can create net vDPA '
        'devices as vdpa at every periodic update; wraps the cached '
        'original (functools.cache, for the life of the process)'),
    PrivateName(
        'nova.virt.libvirt.driver', 'LibvirtDriver',
        '_detach_direct_passthrough_ports',
        'overridden: suspend detaches vdpa interfaces with detach_interface '
        '(which unplugs); the devices are kept for resume'),
    PrivateName(
        'nova.virt.libvirt.driver', 'LibvirtDriver',
        '_detach_direct_passthrough_vifs',
        'overridden: live migration detaches vdpa interfaces on the source '
        'with detach_interface (which unplugs); the devices are kept until '
        'post_live_migration_at_source or the rollback'),
    PrivateName(
        'nova.virt.libvirt.driver', 'LibvirtDriver',
        '_reattach_instance_vifs',
        'overridden: after a live migration (or its rollback) the vdpa '
        'interfaces still in the guest are not attached again; Nova counts '
        'interfaces by <target dev>, which vdpa ones lack'),
    PrivateName(
        'nova.virt.libvirt.driver', 'LibvirtDriver',
        '_live_migration_operation',
        'overridden: wrapped, with its signature (context, instance, dest, '
        'block_migration, migrate_data, guest, device_names); relied on to '
        'call _detach_direct_passthrough_vifs, then build the '
        "destination's interfaces with vif_driver.get_config(vif=<the "
        "destination VIF>), in the calling thread: the wrapper decides "
        'which vdpa ports stay and lets get_config read their records '
        'only meanwhile'),
    PrivateName(
        'nova.virt.libvirt.driver', 'LibvirtDriver', '_host',
        "used: the driver's libvirt Host, given to the VIF driver and used "
        'to find the guest that holds a chardev', on_instance=True),
)


class NovaIncompatible(exception.NovaVdpaException):
    msg_fmt = ('nova-vdpa was checked against Nova %(release)s and needs '
               '%(what)s, which this Nova does not have')


class EventletMode(exception.NovaVdpaException):
    msg_fmt = ('nova-vdpa refuses to run in nova-compute\'s eventlet mode: '
               'its kernel calls keep deadlines with native threads, and '
               'under eventlet one call stuck in the kernel would freeze '
               'every green thread of nova-compute; start nova-compute in '
               'native threading mode (OS_NOVA_DISABLE_EVENTLET_PATCHING=1 '
               'in its environment, or [DEFAULT] concurrency_backend = '
               'threading)')


def check_concurrency_mode() -> None:
    """Refuse nova-compute's eventlet mode (one ERROR line, then raise).

    Nova 34 runs nova-compute with native threads or, deprecated, under
    eventlet's monkey patching (``nova.monkey_patch``), which turns every
    thread into a green thread of one OS thread.

    :raises: EventletMode
    """
    if nova_utils.concurrency_mode_threading():
        return
    error = EventletMode()
    LOG.error('%s', error)
    raise error


def check(driver: ty.Any = None) -> None:
    """Check that every name in :data:`PRIVATE_NAMES` still exists.

    :param driver: the constructed driver, for names set in ``__init__``;
        without it those are skipped.
    :raises: NovaIncompatible naming the first one missing.
    """
    for entry in PRIVATE_NAMES:
        cls = getattr(importlib.import_module(entry.module), entry.cls, None)
        if entry.on_instance:
            if driver is None:
                continue
            owner: ty.Any = driver
        else:
            owner = cls
        if owner is None or not hasattr(owner, entry.name):
            raise NovaIncompatible(
                release=NOVA_RELEASE,
                what='%s.%s.%s' % (entry.module, entry.cls, entry.name))

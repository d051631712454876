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

"""Every Nova internal nova-vdpa overrides or relies on, in one place.

Nova has no plugin interface for a libvirt driver: the driver subclasses
``LibvirtDriver`` and leans on methods and behaviours Nova may change in
any release. Each entry below names one, says what we do with it, and
carries what can be checked cheaply when the driver starts:

* its parameters, as :func:`inspect.signature` shows them in
  :data:`NOVA_RELEASE` (names, kinds, defaults; annotations are ignored);
* for a behaviour rather than a name (an error Nova swallows, how it
  counts or matches interfaces), a *marker*: a piece of the member's
  source that carries the behaviour, which must occur exactly once.
  Markers are cruder than a test, but they are the only check that can
  run inside nova-compute at start; the nova-functional tests exercise
  the behaviours themselves.

:func:`check` runs when the driver is constructed and also checks that
the Nova release is one of :data:`SUPPORTED_NOVA`. Anything else stops
nova-compute with one line naming the member and what changed, instead
of an override that is never called or a behaviour that silently went.

nova-compute's concurrency mode is not checked: nova-vdpa runs in both
(:mod:`nova_vdpa.kernel.native`).
"""

import dataclasses
import importlib
import inspect
import re
import typing as ty

from oslo_log import log as logging

from nova_vdpa.compute import releases
from nova_vdpa import exception

LOG = logging.getLogger(__name__)

#: The Nova release(s) every entry below was read against
#: (:mod:`nova_vdpa.compute.releases`).
NOVA_RELEASE = releases.tested()

#: Nova releases (``major.minor`` of Nova's version) nova-vdpa runs on:
#: the stable branch of :data:`NOVA_RELEASE`, whose bug-fix releases keep
#: the internals above. Another release is refused even if every check
#: below passes: nothing else was tested.
SUPPORTED_NOVA = tuple(r.version for r in releases.SUPPORTED)


@dataclasses.dataclass(frozen=True)
class PrivateName:
    """A Nova internal we override, call or rely on.

    :param module: the module defining ``cls`` (or the function).
    :param cls: the class name; empty for a module-level function.
    :param name: the member name.
    :param why: what we do with it.
    :param on_instance: the member is set in ``__init__``, so it is checked
        on the driver object rather than on the class.
    :param signature: the member's parameters in :data:`NOVA_RELEASE`, as
        :func:`parameters` renders them; None for an attribute.
    :param markers: pieces of the member's source (whitespace ignored)
        that must each occur exactly once: the behaviour we rely on.
    """

    module: str
    cls: str
    name: str
    why: str
    on_instance: bool = False
    signature: str | None = None
    markers: tuple[str, ...] = ()

    @property
    def qualname(self) -> str:
        return '.'.join(p for p in (self.module, self.cls, self.name) if p)


_DRIVER = 'nova.virt.libvirt.driver'

PRIVATE_NAMES: tuple[PrivateName, ...] = (
    PrivateName(
        _DRIVER, 'LibvirtDriver',
        '_get_pci_passthrough_devices',
        'overridden: types VFs whose management device can create net vDPA '
        'devices as vdpa at every periodic update; wraps the cached '
        'original (functools.cache, for the life of the process)',
        signature='(self)'),
    PrivateName(
        _DRIVER, 'LibvirtDriver',
        '_detach_direct_passthrough_ports',
        'overridden: suspend detaches vdpa interfaces with detach_interface '
        '(which unplugs); the devices are kept for resume',
        signature='(self, context, instance, guest)'),
    PrivateName(
        _DRIVER, 'LibvirtDriver',
        '_detach_direct_passthrough_vifs',
        'overridden: live migration detaches vdpa interfaces on the source '
        'with detach_interface (which unplugs); the devices are kept until '
        'post_live_migration_at_source or the rollback',
        signature='(self, context, migrate_data, instance)'),
    PrivateName(
        _DRIVER, 'LibvirtDriver',
        '_reattach_instance_vifs',
        'overridden: after a live migration (or its rollback) the vdpa '
        'interfaces still in the guest are not attached again; Nova counts '
        'interfaces by <target dev>, which vdpa ones lack',
        signature='(self, context, instance, network_info)'),
    PrivateName(
        _DRIVER, 'LibvirtDriver',
        '_live_migration_operation',
        'overridden: wrapped, with its signature (context, instance, dest, '
        'block_migration, migrate_data, guest, device_names); relied on to '
        'call _detach_direct_passthrough_vifs, then build the '
        "destination's interfaces with vif_driver.get_config(vif=<the "
        "destination VIF>), in the calling thread: the wrapper decides "
        'which vdpa ports stay and lets get_config read their records '
        'only meanwhile',
        signature='(self, context, instance, dest, block_migration, '
                  'migrate_data, guest, device_names)',
        markers=('self._detach_direct_passthrough_vifs(',
                 'get_vif_config=functools.partial(self.vif_driver.'
                 'get_config')),
    PrivateName(
        _DRIVER, 'LibvirtDriver', '_host',
        "used: the driver's libvirt Host, given to the VIF driver and used "
        'to find the guest that holds a chardev', on_instance=True),
    PrivateName(
        _DRIVER, 'LibvirtDriver', '__init__',
        'relied on: the constructor makes vif_driver from self._host and '
        'keeps no other reference to it, so ours, set after it, is the '
        'one every later call reads (the marker "vif_driver" occurs once)',
        signature='(self, virtapi, read_only=False)',
        markers=('self.vif_driver=libvirt_vif.LibvirtGenericVIFDriver('
                 'self._host)', 'vif_driver')),
    PrivateName(
        _DRIVER, 'LibvirtDriver', 'vif_driver',
        'replaced: our LibvirtVdpaVIFDriver is set after the constructor',
        on_instance=True),
    PrivateName(
        _DRIVER, 'LibvirtDriver', '_unplug_vifs',
        "relied on: cleanup unplugs with ignore_errors=True and swallows "
        "only NovaException; our unplug raises nothing else (a release "
        "never raises)",
        signature='(self, instance, network_info, ignore_errors)',
        markers=('exceptexception.NovaException:ifnotignore_errors:raise',)),
    PrivateName(
        'nova.virt.libvirt.vif', 'LibvirtGenericVIFDriver', '__init__',
        'subclassed: LibvirtVdpaVIFDriver calls it with the Host and reads '
        'self.host',
        signature='(self, host=None)', markers=('self.host=host',)),
    PrivateName(
        'nova.virt.libvirt.guest', 'Guest', 'get_interfaces',
        'relied on: counts interfaces by <target dev>, which vdpa ones '
        'lack (why _reattach_instance_vifs is overridden)',
        signature='(self)',
        markers=("findall('./devices/interface/target')",)),
    PrivateName(
        'nova.virt.libvirt.guest', 'Guest', 'get_interface_by_cfg',
        "relied on: keeps only the guest's devices of type(cfg), so the "
        "VIF driver returns Nova's own interface class "
        "(vif._nova_shaped), never a subclass",
        signature='(self, cfg, from_persistent_config=False)',
        markers=('self.get_all_devices(type(cfg),from_persistent_config)',)),
    PrivateName(
        'nova.virt.libvirt.guest', 'Guest', 'get_all_devices',
        'called: the vdpa interfaces of a guest (reattach, who holds a '
        'chardev)',
        signature='(self, devtype=None, from_persistent_config=False)'),
    PrivateName(
        'nova.virt.libvirt.host', 'Host', 'get_guest',
        "called: the instance's guest before a reattach",
        signature='(self, instance)'),
    PrivateName(
        'nova.virt.libvirt.host', 'Host', 'list_guests',
        'called: the running guests, to name the holder of a chardev',
        signature='(self, only_running=True)'),
    PrivateName(
        'nova.virt.libvirt.migration', '', '_update_vif_xml',
        'relied on: matches each <interface> of the migrating guest to its '
        "migrate VIF by MAC, which is how a vdpa port's destination "
        'interface (from our record) replaces the source one',
        signature='(xml_doc, migrate_data, get_vif_config)',
        markers=('migrate_vif_by_mac[mac_addr.lower()]',
                 'get_vif_config(vif=vif)')),
    PrivateName(
        'nova.objects.migration', 'MigrationList', 'get_by_filters',
        'called: the last live migration of an instance to this host '
        '(filters instance_uuid, migration_type, dest_compute)',
        signature='(context, filters, sort_keys=None, sort_dirs=None, '
                  'limit=None, marker=None)'),
    PrivateName(
        'nova.objects.migration', 'MigrationList',
        'get_in_progress_by_host_and_node',
        'called: the instances migrating to or from this host at start-up',
        signature='(context, host, node)'),
    PrivateName(
        'nova.network.os_vif_util', '', 'nova_to_osvif_vif',
        "called: a vdpa port's os-vif VIFHostDevice, whose dev_address is "
        'the VF Nova claimed',
        signature='(vif)'),
    PrivateName(
        'nova.virt.hardware', '', 'get_vif_multiqueue_constraint',
        "called: Nova's reading of hw:vif_multiqueue_enabled, for the "
        "device's queue pairs",
        signature='(flavor, image_meta)'),
    PrivateName(
        'nova.virt.driver', '', 'load_compute_driver',
        "relied on: imports 'nova.virt.' + compute_driver, which is why "
        'the package ships nova/virt/nova_vdpa',
        signature='(virtapi, compute_driver=None)',
        markers=("'nova.virt.%s'%compute_driver",)),
)


class NovaIncompatible(exception.NovaVdpaException):
    msg_fmt = ('nova-vdpa cannot run on this Nova: %(what)s (nova-vdpa was '
               'checked against Nova %(release)s)')


def parameters(member: ty.Any) -> str:
    """A member's parameters as :data:`PRIVATE_NAMES` records them.

    ``inspect.signature`` without annotations: names, kinds (``/``, ``*``,
    ``*args``, ``**kwargs``) and default values.
    """
    sig = inspect.signature(member)
    sig = sig.replace(
        parameters=[p.replace(annotation=inspect.Parameter.empty)
                    for p in sig.parameters.values()],
        return_annotation=inspect.Signature.empty)
    return str(sig)


def _compact(text: str) -> str:
    return re.sub(r'\s+', '', text)


def nova_version() -> str:
    """The installed Nova's version, as Nova reports it (pbr)."""
    return releases.installed()


def check_release(version: str | None = None) -> None:
    """Refuse a Nova release outside :data:`SUPPORTED_NOVA`.

    :param version: Nova's version string, e.g. ``34.0.1``; read from Nova
        when not given.
    :raises: NovaIncompatible naming the release, and why when
        :data:`nova_vdpa.compute.releases.REFUSED` knows.
    """
    if version is None:
        version = nova_version()
    if releases.find(version) is not None:
        return
    what = 'Nova %s is not a supported release (supported: %s)' % (
        version, ', '.join(r + '.x' for r in SUPPORTED_NOVA))
    why = releases.refusal(version)
    if why is not None:
        what = '%s: %s' % (what, why)
    raise NovaIncompatible(release=NOVA_RELEASE, what=what)


def _member(entry: PrivateName, driver: ty.Any) -> tuple[bool, ty.Any]:
    """(found, member) for one entry; found is True when skipped."""
    owner: ty.Any = importlib.import_module(entry.module)
    if entry.cls:
        owner = getattr(owner, entry.cls, None)
    if entry.on_instance:
        if driver is None:
            return True, None
        owner = driver
    if owner is None or not hasattr(owner, entry.name):
        return False, None
    return True, getattr(owner, entry.name)


def check_entry(entry: PrivateName, driver: ty.Any = None) -> None:
    """Check one entry: it exists, its parameters, its markers.

    :raises: NovaIncompatible saying what changed.
    """
    found, member = _member(entry, driver)
    if not found:
        raise NovaIncompatible(release=NOVA_RELEASE,
                               what='%s is missing' % entry.qualname)
    if member is None:
        return
    if entry.signature is not None:
        actual = parameters(member)
        if actual != entry.signature:
            raise NovaIncompatible(
                release=NOVA_RELEASE,
                what='%s takes %s, not %s' % (entry.qualname, actual,
                                              entry.signature))
    if entry.markers:
        try:
            source = _compact(inspect.getsource(member))
        except (OSError, TypeError) as e:
            raise NovaIncompatible(
                release=NOVA_RELEASE,
                what='the source of %s cannot be read to check what we '
                     'rely on (%s)' % (entry.qualname, e))
        for marker in entry.markers:
            count = source.count(_compact(marker))
            if count != 1:
                raise NovaIncompatible(
                    release=NOVA_RELEASE,
                    what='%s has %r %d times, not once (%s)' % (
                        entry.qualname, marker, count, entry.why))


def check(driver: ty.Any = None, version: str | None = None) -> None:
    """Check the Nova release, then every entry of :data:`PRIVATE_NAMES`.

    :param driver: the constructed driver, for names set in ``__init__``;
        without it those are skipped.
    :param version: Nova's version; read from Nova when not given.
    :raises: NovaIncompatible naming the release or the first entry that
        changed.
    """
    check_release(nova_version() if version is None else version)
    for entry in PRIVATE_NAMES:
        check_entry(entry, driver)

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

"""Live migration of vdpa ports without hot-unplug.

Upstream Nova live-migrates a vdpa port by detaching it from the guest on
the source and attaching it again on the destination: the guest loses its
NIC meanwhile. QEMU can migrate a vhost-vdpa net device instead (see
:func:`nova_vdpa.libvirt.designer.live_migration_possible` and
:mod:`nova_vdpa.kernel.vhost`). This module decides that per port and
carries what the source needs in Nova's migration data. It is off unless
``[nova_vdpa] live_migration_without_unplug`` is set (each host reads its
own); off, every port takes upstream's path.

On the destination (``pre_live_migration``, after Nova plugged the VIFs),
when its QEMU can migrate vdpa interfaces, each vdpa port of ours gets its
device now, and the device's vhost backend is read from the kernel. A
device that can be suspended and isolate its control queue is described in
the port's migrate VIF's binding profile under :data:`PROFILE_KEY` (the
catch-all where Nova itself keeps its os-vif delegation flag) as a
versioned :class:`Record`: the migration's UUID, its chardev, what the
designer needs, the host's versions and the device's kind. A device that
cannot is released again, and the port takes upstream's path. A record
found there before (another host's, or an admin's ``binding:profile``) is
dropped first: only this host writes one.

On the source, the record is read (:meth:`Record.from_profile`: a record
of another version or with a bad value is ignored, with the reason
logged) only while Nova builds that migration's destination XML
(:func:`building_destination_xml`, around Nova's
``_live_migration_operation``); every other ``get_config`` ignores it. A
port whose record names this migration, whose own QEMU can migrate vdpa
interfaces and whose own device is of the same kind, with the same queue
pairs, features and MTU, is not detached; the VIF driver builds its
destination ``<interface>`` from the record. Any difference sends the
port down upstream's path, logged with the reason. The source's device is
busy under QEMU, and the kernel answers the backend ioctls only to the
node's one opener, so its support is inferred from its kind and its
configuration, read over netlink (never by opening the node): the
management device's bus (or simulator name) and vendor id, and the kernel
release, which must all equal the destination's, whose device was
measured.

A migration that fails leaves the guest and its device on the source
untouched. The destination remembers the migrations it prepared and
releases their devices when they fail (:mod:`nova_vdpa.compute.incoming`).
After a restart, the start-up reconcile keeps the devices of ours of every
port of an instance with a live migration in progress to this host
(:mod:`nova_vdpa.compute.startup`).
"""

import contextlib
import dataclasses
import os
import threading
import typing as ty

from nova.network import model as network_model
import nova.objects as objects
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa.compute import errors
from nova_vdpa import conf as vdpa_conf
from nova_vdpa import exception
from nova_vdpa.libvirt import designer

LOG = logging.getLogger(__name__)

#: the key of a migrate VIF's binding profile that carries the record
PROFILE_KEY = 'nova_vdpa_migration'
#: the version of :class:`Record` this release writes and reads
RECORD_VERSION = 1


def enabled(conf: cfg.ConfigOpts) -> bool:
    """``[nova_vdpa] live_migration_without_unplug``, read at start."""
    return bool(conf[vdpa_conf.vdpa_group.name]
                .live_migration_without_unplug)


@dataclasses.dataclass(frozen=True)
class Record:
    """A destination device, as the source needs it (JSON-able fields).

    :param version: :data:`RECORD_VERSION` of the release that wrote it.
    :param migration: the UUID of the live migration it was made for.

    ``chardev`` to ``mtu`` are :class:`~nova_vdpa.libvirt.designer.Device`'s.
    """

    version: int
    migration: str
    chardev: str
    max_queue_pairs: int
    max_vq_size: int | None
    features: int | None
    mtu: int | None
    libvirt_version: int
    qemu_version: int
    kind: str

    def device(self) -> designer.Device:
        """The designer's device: the fields of the same names."""
        return designer.Device(**{f.name: getattr(self, f.name)
                                  for f in dataclasses.fields(
                                      designer.Device)})

    def host(self) -> designer.Host:
        return designer.Host(self.libvirt_version, self.qemu_version)

    @classmethod
    def from_profile(cls, profile: ty.Any, port_id: str) -> 'Record | None':
        """The record of a binding profile; None for none or a bad one.

        A record this release cannot read (another version, a missing or
        unknown field, a value of the wrong type or out of range) is
        logged with the reason and ignored: the port takes upstream's
        path. Never raises.
        """
        if not isinstance(profile, dict) or PROFILE_KEY not in profile:
            return None
        data = profile[PROFILE_KEY]
        version = data.get('version') if isinstance(data, dict) else None
        if isinstance(data, dict) and version != RECORD_VERSION and \
                isinstance(version, int) and not isinstance(version, bool):
            LOG.info('vdpa port %(port)s takes the hot-unplug path: its '
                     'record is of version %(version)d, this release reads '
                     'version %(ours)d',
                     {'port': port_id, 'version': version,
                      'ours': RECORD_VERSION})
            return None
        why = _invalid(data)
        if why is not None:
            LOG.warning('vdpa port %(port)s takes the hot-unplug path: its '
                        'record %(key)s is invalid: %(why)s',
                        {'port': port_id, 'key': PROFILE_KEY, 'why': why})
            return None
        return cls(**data)


def _invalid(data: ty.Any) -> str | None:
    """Why ``data`` is not a record of this version; None if it is."""
    if not isinstance(data, dict):
        return 'it is a %s, not a mapping' % type(data).__name__
    names = {f.name for f in dataclasses.fields(Record)}
    if set(data) != names:
        return 'fields %s missing, %s unknown' % (
            sorted(names - set(data)) or 'none',
            sorted(str(k) for k in set(data) - names) or 'none')
    if data['version'] != RECORD_VERSION or isinstance(data['version'],
                                                       bool):
        return 'version %r is not %d' % (data['version'], RECORD_VERSION)
    if not isinstance(data['migration'], str) or \
            not uuidutils.is_uuid_like(data['migration']):
        return 'migration %r is not a UUID' % (data['migration'],)
    if not isinstance(data['kind'], str) or not data['kind']:
        return 'kind %r is not a text' % (data['kind'],)
    try:
        designer.Device(**{f.name: data[f.name]
                           for f in dataclasses.fields(designer.Device)})
        designer.Host(data['libvirt_version'], data['qemu_version'])
    except exception.InvalidVdpaInterfaceRequest as e:
        return str(e)
    return None


def device_kind(allocation: vdpa_allocator.Allocation) -> str:
    """What must match between the two hosts' devices (see above)."""
    bus, _, name = allocation.mgmtdev.partition('/')
    kind = bus if name else allocation.mgmtdev
    return '%s vendor %#x, Linux %s' % (
        kind, allocation.device.vendor_id or 0, os.uname().release)


def host_of(connection: ty.Any) -> designer.Host:
    return designer.Host(connection.getLibVersion(), connection.getVersion())


def _vdpa_migrate_vifs(migrate_data: ty.Any) -> list[ty.Any]:
    if 'vifs' not in migrate_data or not migrate_data.vifs:
        return []
    return [v for v in migrate_data.vifs
            if v.vnic_type == network_model.VNIC_TYPE_VDPA
            and 'source_vif' in v and v.source_vif]


def migration_uuid(migrate_data: ty.Any) -> str | None:
    """The UUID of the migration of Nova's migration data, if it has one.

    The source's compute manager sets it before the driver migrates and
    before it asks the destination to roll back.
    """
    if migrate_data is None or 'migration' not in migrate_data or \
            migrate_data.migration is None:
        return None
    return migrate_data.migration.uuid

    def port_ids(self) -> set[str]:
        """The ports of every prepared migration (the orphan sweep's)."""
        with self._lock:
            return {port for ports in self._ports.values()
                    for port, _ in ports}


def _preparing_migration(context: ty.Any, instance: ty.Any,
                         host: str) -> str | None:
    """The UUID of the instance's live migration to this host, preparing.

    Nova's ``pre_live_migration`` is not given the migration; the source
    set its status to ``preparing`` before it asked this host.
    """
    migrations = objects.MigrationList.get_by_filters(
        context, {'instance_uuid': instance.uuid,
                  'migration_type': 'live-migration',
                  'dest_compute': host, 'status': 'preparing'},
        sort_keys=['created_at', 'id'], sort_dirs=['desc', 'desc'], limit=1)
    return migrations[0].uuid if migrations else None


def prepare_destination(driver: ty.Any, context: ty.Any, instance: ty.Any,
                        migrate_data: ty.Any) -> None:
    """Make the vdpa ports' devices now, and record those that migrate.

    :raises: Nova's exceptions for a port whose device cannot be made
        (the devices made by this call are released first).
    """
    vifs = _vdpa_migrate_vifs(migrate_data)
    for migrate_vif in vifs:
        # Only this host writes a record: drop one that came with the
        # destination binding's profile.
        if isinstance(migrate_vif.profile, dict) and \
                PROFILE_KEY in migrate_vif.profile:
            LOG.warning('vdpa port %s: the %s in its binding profile was not '
                        'written by this host and is ignored',
                        migrate_vif.port_id, PROFILE_KEY, instance=instance)
            migrate_vif.profile = {k: v for k, v in
                                   migrate_vif.profile.items()
                                   if k != PROFILE_KEY}
    if not vifs or not driver.vdpa_without_unplug:
        return
    host = host_of(driver._host.get_connection())
    if not designer.live_migration_possible(host):
        LOG.info('vdpa ports take the hot-unplug path: QEMU %s here cannot '
                 'migrate them', designer.version_str(host.qemu_version),
                 instance=instance)
        return
    migration = _preparing_migration(context, instance,
                                     driver.vdpa_hostname)
    if migration is None:
        LOG.info('vdpa ports take the hot-unplug path: no live migration '
                 'of this instance to this host is preparing',
                 instance=instance)
        return
    try:
        for migrate_vif in vifs:
            dest_vif = migrate_vif.get_dest_vif()
            record = _prepare_port(driver, instance, migration, dest_vif,
                                   host)
            if record is not None:
                migrate_vif.profile = dict(
                    migrate_vif.profile, **{PROFILE_KEY: dataclasses.asdict(
                        record)})
    except Exception:
        with driver.vdpa_incoming.ending(migration) as ports:
            for port_id, vf in ports:
                driver.vif_driver.release(instance, port_id, vf)
        raise


def _prepare_port(driver: ty.Any, instance: ty.Any, migration: str,
                  dest_vif: ty.Any, host: designer.Host) -> Record | None:
    vif_driver = driver.vif_driver
    vif_obj = vif_driver._vdpa_vif(dest_vif)
    vf = vif_driver.vf_address(vif_obj) if vif_obj is not None else None
    if vf is None:
        return None
    image_meta = objects.ImageMeta.from_instance(instance)
    # Known before it is made: a cleanup of an earlier migration of the
    # instance to this host then leaves it alone.
    driver.vdpa_incoming.add(migration, instance.uuid, vif_obj.id, vf)
    with errors.translated(instance, vif_obj.id):
        allocation = vif_driver.releases.allocate(
            vif_driver._request(vif_obj, image_meta, instance.flavor))
    if not allocation.owned:
        driver.vdpa_incoming.discard(migration, vif_obj.id)
        LOG.info('vdpa port %s takes the hot-unplug path: its device %s on '
                 'this host is an operator\'s', vif_obj.id, allocation.name,
                 instance=instance)
        return None
    try:
        backend = driver.vdpa_allocator.vhost_backend(allocation)
        blocker = backend.migration_blocker(allocation.config.device_features)
    except exception.NovaVdpaException as e:
        blocker = 'its vhost backend could not be read: %s' % e
    if blocker is not None:
        LOG.info('vdpa port %(port)s takes the hot-unplug path: device '
                 '%(dev)s cannot migrate live: %(why)s',
                 {'port': vif_obj.id, 'dev': allocation.name,
                  'why': blocker}, instance=instance)
        driver.vdpa_incoming.discard(migration, vif_obj.id)
        vif_driver.release(instance, vif_obj.id, vf)
        return None
    return Record(
        version=RECORD_VERSION, migration=migration,
        **dataclasses.asdict(designer.device_of(allocation)),
        libvirt_version=host.libvirt_version,
        qemu_version=host.qemu_version,
        kind=device_kind(allocation))


# -- the source --------------------------------------------------------------

#: what the thread that builds a destination XML may use (see below)
_building = threading.local()


@contextlib.contextmanager
def building_destination_xml(driver: ty.Any, instance: ty.Any,
                             migrate_data: ty.Any) -> ty.Iterator[None]:
    """While this thread builds this migration's destination XML.

    Around Nova's ``_live_migration_operation``, which detaches the ports
    that do not stay (``_detach_direct_passthrough_vifs``) and then builds
    the destination's interfaces with ``get_config``, in this thread. The
    ports that stay (:func:`staying_ports`) and their records are decided
    once, here; :func:`destination_record` answers only meanwhile.
    """
    records = _staying(driver, instance, migrate_data)
    _building.records = records
    try:
        yield
    finally:
        del _building.records


def staying_ports() -> set[str]:
    """Port ids that migrate without hot-unplug, in this thread now."""
    return set(getattr(_building, 'records', None) or ())


def destination_record(vif: ty.Any, port_id: str) -> Record | None:
    """The record ``get_config`` builds the VIF's interface from, if any.

    Only while :func:`building_destination_xml` runs in this thread, for a
    port that stays, and for its destination VIF (whose profile carries
    the same record). Any other ``get_config`` ignores a record: a spawn's
    port whose ``binding:profile`` names a device gets its own device.
    """
    profile = vif.get('profile') or {}
    records = getattr(_building, 'records', None)
    if records is None:
        if isinstance(profile, dict) and PROFILE_KEY in profile:
            LOG.warning('vdpa port %s: the %s in its binding profile is '
                        'ignored: it is read only while a live migration '
                        'builds its destination XML', port_id, PROFILE_KEY)
        return None
    record = records.get(port_id)
    if record is None or Record.from_profile(profile, port_id) != record:
        return None
    return record


def _staying(driver: ty.Any, instance: ty.Any,
             migrate_data: ty.Any) -> dict[str, Record]:
    """Port id -> destination record of the ports that stay in the guest."""
    vifs = _vdpa_migrate_vifs(migrate_data)
    if not vifs:
        return {}
    migration = migration_uuid(migrate_data)
    host = host_of(driver._host.get_connection())
    staying = {}
    for migrate_vif in vifs:
        record = Record.from_profile(migrate_vif.get_dest_vif().get(
            'profile'), migrate_vif.port_id)
        if record is None:
            continue
        why = _source_blocker(driver, migrate_vif, record, host, migration)
        if why is None:
            staying[migrate_vif.port_id] = record
            LOG.info('vdpa port %(port)s migrates without hot-unplug, to '
                     '%(chardev)s on the destination',
                     {'port': migrate_vif.port_id,
                      'chardev': record.chardev}, instance=instance)
        else:
            LOG.info('vdpa port %(port)s takes the hot-unplug path: %(why)s',
                     {'port': migrate_vif.port_id, 'why': why},
                     instance=instance)
    return staying


#: what must be equal on both hosts' devices: designer.Device's fields
_COMPARED = ('max_queue_pairs', 'features', 'mtu')


def _source_blocker(driver: ty.Any, migrate_vif: ty.Any, record: Record,
                    host: designer.Host, migration: str | None) -> str | None:
    if not driver.vdpa_without_unplug:
        return 'live_migration_without_unplug is off on this host'
    if migration is None or record.migration != migration:
        return ('its record was made for migration %s, not this one (%s)'
                % (record.migration, migration))
    if not designer.live_migration_possible(host):
        return ('QEMU %s here cannot migrate it'
                % designer.version_str(host.qemu_version))
    if not designer.live_migration_possible(record.host()):
        return ('QEMU %s on the destination cannot migrate it'
                % designer.version_str(record.qemu_version))
    vif_obj = driver.vif_driver._vdpa_vif(migrate_vif.source_vif)
    vf = (driver.vif_driver.vf_address(vif_obj) if vif_obj is not None
          else None)
    try:
        found = driver.vdpa_allocator.lookup(migrate_vif.port_id, vf)
        here = designer.device_of(found) if found is not None else None
    except exception.NovaVdpaException as e:
        return 'its device here could not be read: %s' % e
    if found is None or here is None:
        return 'it has no device here'
    kind = device_kind(found)
    if kind != record.kind:
        return ('its device here (%s) is not of the kind measured on the '
                'destination (%s)' % (kind, record.kind))
    for name in _COMPARED:
        mine, theirs = getattr(here, name), getattr(record, name)
        if mine != theirs:
            return ('its device here has %s %s, the destination\'s %s'
                    % (name.replace('_', ' '), _shown(name, mine),
                       _shown(name, theirs)))
    return None


def _shown(name: str, value: int | None) -> str:
    if value is None:
        return 'unknown'
    return '%#x' % value if name == 'features' else str(value)

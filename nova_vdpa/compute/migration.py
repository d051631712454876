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
carries what the source needs in Nova's migration data.

On the destination (``pre_live_migration``, after Nova plugged the VIFs),
when its QEMU can migrate vdpa interfaces, each vdpa port of ours gets its
device now, and the device's vhost backend is read from the kernel. A
device that can be suspended and isolate its control queue is described in
the port's migrate VIF's binding profile under :data:`PROFILE_KEY` (the
catch-all where Nova itself keeps its os-vif delegation flag): its
chardev, what the designer needs, the host's versions and the device's
kind. A device that cannot is released again, and the port takes
upstream's path.

On the source, a port whose record is there, whose own QEMU can migrate
vdpa interfaces and whose own device is of the same kind is not detached;
the VIF driver builds its destination ``<interface>`` from the record.
The source's device is busy under QEMU, and the kernel answers the
backend ioctls only to the node's one opener, so its support is inferred
from its kind: the management device's bus (or simulator name) and
vendor id, read from the kernel, and the kernel release, which must all
equal the destination's, whose device was measured.

A migration that fails leaves the guest and its device on the source
untouched. The destination's devices go with Nova's
``rollback_live_migration_at_destination`` (destroy, then unplug); Nova
calls it only when it cleans the destination up (not with a shared
instance path), so the destination also remembers the migrations it
prepared (:class:`Incoming`) and, at the periodic resource update,
releases the devices of one that ended without the instance arriving.
"""

import dataclasses
import os
import threading
import typing as ty

import nova.context as nova_context
from nova import exception as exception_nova
from nova.network import model as network_model
import nova.objects as objects
from oslo_log import log as logging

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa.compute import errors
from nova_vdpa import exception
from nova_vdpa.libvirt import designer

LOG = logging.getLogger(__name__)

#: the key of a migrate VIF's binding profile that carries the record
PROFILE_KEY = 'nova_vdpa_migration'


@dataclasses.dataclass(frozen=True)
class Record:
    """A destination device, as the source needs it (JSON-able fields).

    The first five are :class:`~nova_vdpa.libvirt.designer.Device`'s.
    """

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


def record_of(vif: ty.Any) -> Record | None:
    """The destination record of a (destination) network model VIF."""
    data = (vif.get('profile') or {}).get(PROFILE_KEY)
    if not isinstance(data, dict):
        return None
    try:
        return Record(**data)
    except TypeError:  # another release's record: upstream's path
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


class Incoming:
    """The live migrations this host prepared as a destination.

    instance UUID -> [(port id, VF address)] of the devices made for it.
    In memory: after a restart, the start-up reconcile deletes the devices
    of a migration that is over.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ports: dict[str, list[tuple[str, str | None]]] = {}

    def add(self, instance_uuid: str, port_id: str,
            vf_address: str | None) -> None:
        with self._lock:
            self._ports.setdefault(instance_uuid, []).append(
                (port_id, vf_address))

    def pop(self, instance_uuid: str) -> list[tuple[str, str | None]]:
        with self._lock:
            return self._ports.pop(instance_uuid, [])

    def instances(self) -> list[str]:
        with self._lock:
            return list(self._ports)

    def port_ids(self) -> set[str]:
        """The ports of every prepared migration (the orphan sweep's)."""
        with self._lock:
            return {port for ports in self._ports.values()
                    for port, _ in ports}


def prepare_destination(driver: ty.Any, instance: ty.Any,
                        migrate_data: ty.Any) -> None:
    """Make the vdpa ports' devices now, and record those that migrate.

    :raises: Nova's exceptions for a port whose device cannot be made
        (the devices made by this call are released first).
    """
    vifs = _vdpa_migrate_vifs(migrate_data)
    if not vifs:
        return
    vif_driver = driver.vif_driver
    host = host_of(driver._host.get_connection())
    if not designer.live_migration_possible(host):
        LOG.info('vdpa ports take the hot-unplug path: QEMU %s here cannot '
                 'migrate them', designer.version_str(host.qemu_version),
                 instance=instance)
        return
    made: list[tuple[str, str | None]] = []
    try:
        for migrate_vif in vifs:
            dest_vif = migrate_vif.get_dest_vif()
            record = _prepare_port(driver, instance, dest_vif, host, made)
            if record is not None:
                migrate_vif.profile = dict(
                    migrate_vif.profile, **{PROFILE_KEY: dataclasses.asdict(
                        record)})
    except Exception:
        for port_id, vf in made:
            vif_driver.release(instance, port_id, vf)
        raise
    for port_id, vf in made:
        driver.vdpa_incoming.add(instance.uuid, port_id, vf)


def _prepare_port(driver: ty.Any, instance: ty.Any, dest_vif: ty.Any,
                  host: designer.Host,
                  made: list[tuple[str, str | None]]) -> Record | None:
    vif_driver = driver.vif_driver
    vif_obj = vif_driver._vdpa_vif(dest_vif)
    vf = vif_driver.vf_address(vif_obj) if vif_obj is not None else None
    if vf is None:
        return None
    image_meta = objects.ImageMeta.from_instance(instance)
    with errors.translated(instance, vif_obj.id):
        allocation = vif_driver.releases.allocate(
            vif_driver._request(vif_obj, image_meta, instance.flavor))
    if not allocation.owned:
        LOG.info('vdpa port %s takes the hot-unplug path: its device %s on '
                 'this host is an operator\'s', vif_obj.id, allocation.name,
                 instance=instance)
        return None
    made.append((vif_obj.id, vf))
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
        made.remove((vif_obj.id, vf))
        vif_driver.release(instance, vif_obj.id, vf)
        return None
    return Record(
        **dataclasses.asdict(designer.device_of(allocation)),
        libvirt_version=host.libvirt_version,
        qemu_version=host.qemu_version,
        kind=device_kind(allocation))


def staying_vifs(driver: ty.Any, instance: ty.Any,
                 migrate_data: ty.Any) -> set[str]:
    """Port ids (on the source) that migrate without hot-unplug."""
    vifs = _vdpa_migrate_vifs(migrate_data)
    if not vifs:
        return set()
    host = host_of(driver._host.get_connection())
    staying = set()
    for migrate_vif in vifs:
        record = record_of(migrate_vif.get_dest_vif())
        if record is None:
            continue
        why = _source_blocker(driver, migrate_vif, record, host)
        if why is None:
            staying.add(migrate_vif.port_id)
            LOG.info('vdpa port %(port)s migrates without hot-unplug, to '
                     '%(chardev)s on the destination',
                     {'port': migrate_vif.port_id,
                      'chardev': record.chardev}, instance=instance)
        else:
            LOG.info('vdpa port %(port)s takes the hot-unplug path: %(why)s',
                     {'port': migrate_vif.port_id, 'why': why},
                     instance=instance)
    return staying


def _source_blocker(driver: ty.Any, migrate_vif: ty.Any, record: Record,
                    host: designer.Host) -> str | None:
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
    except exception.NovaVdpaException as e:
        return 'its device here could not be read: %s' % e
    if found is None:
        return 'it has no device here'
    kind = device_kind(found)
    if kind != record.kind:
        return ('its device here (%s) is not of the kind measured on the '
                'destination (%s)' % (kind, record.kind))
    return None


#: statuses of a live migration that ended without the instance moving
_FAILED = frozenset({'failed', 'error', 'cancelled'})


def _ended_elsewhere(context: ty.Any, uuid: str, host: str) -> bool | None:
    """Whether the instance's live migration to ``host`` failed.

    :returns: True when it failed (or the instance is gone), False when it
        reached this host, None while it is not over.
    """
    try:
        instance = objects.Instance.get_by_uuid(context, uuid)
    except exception_nova.InstanceNotFound:
        return True
    if instance.host == host:
        return False
    migrations = objects.MigrationList.get_by_filters(
        context, {'instance_uuid': uuid, 'migration_type': 'live-migration',
                  'dest_compute': host},
        sort_keys=['created_at', 'id'], sort_dirs=['desc', 'desc'], limit=1)
    if not migrations:
        return True
    status = migrations[0].status
    if status in _FAILED:
        return True
    return False if status == 'completed' else None


def sweep(driver: ty.Any, host: str) -> None:
    """Release the devices of prepared migrations that failed.

    Run by the periodic resource update; never raises.
    """
    incoming = driver.vdpa_incoming
    uuids = incoming.instances()
    if not uuids:
        return
    context = nova_context.get_admin_context()
    for uuid in uuids:
        try:
            ended = _ended_elsewhere(context, uuid, host)
        except Exception:
            LOG.exception('Could not read the live migration of instance '
                          '%s', uuid)
            continue
        if ended is None:
            continue
        ports = incoming.pop(uuid)
        if not ended:
            continue
        for port_id, vf in ports:
            LOG.info('Releasing the vDPA device of port %(port)s, made for '
                     'a live migration of instance %(uuid)s that failed',
                     {'port': port_id, 'uuid': uuid})
            driver.vif_driver.releases.release(port_id, vf,
                                               instance_uuid=uuid)

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

"""The live migrations a destination prepared, and their cleanup.

:mod:`nova_vdpa.compute.migration` makes a port's device on the
destination before a live migration without hot-unplug. Those devices
must go when the migration fails, and must stay as long as a migration
may still use them. :class:`Incoming` remembers them by migration (UUID),
in memory: Nova's migrations are the record, and after a restart the
start-up reconcile (:mod:`nova_vdpa.compute.startup`) adds the devices it
kept for the live migrations still in progress to this host.

Who releases them:

* ``rollback_live_migration_at_destination``, when Nova calls it (not
  with a shared instance path), for that migration;
* :func:`sweep`, at the periodic resource update, once Nova marked the
  migration ``failed``, ``error`` or ``cancelled`` (a source that crashed
  leaves it ``running`` until its restart marks it ``error``) and the
  instance is not on this host;
* nobody, once the instance arrived (``post_live_migration_at_destination``
  or a ``completed`` migration): the devices are the instance's.

A port's device is released only when no other prepared migration of this
host holds the port: a quick re-migration of the instance to this host,
prepared before the first one's cleanup, keeps its device.
"""

import contextlib
import dataclasses
import threading
import typing as ty

import nova.context as nova_context
from nova import exception as exception_nova
import nova.objects as objects
from oslo_log import log as logging

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class _Prepared:
    instance_uuid: str
    #: (port id, VF address) of each device made for the migration
    ports: list[tuple[str, str | None]]


class Incoming:
    """The live migrations this host prepared as a destination.

    Migration UUID -> its instance and the devices made for it, in memory:
    Nova's migrations are the record. After a restart, the start-up
    reconcile keeps the devices of the live migrations still in progress
    to this host and adds them here again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._migrations: dict[str, _Prepared] = {}

    def add(self, migration: str, instance_uuid: str, port_id: str,
            vf_address: str | None) -> None:
        with self._lock:
            prepared = self._migrations.setdefault(
                migration, _Prepared(instance_uuid, []))
            if (port_id, vf_address) not in prepared.ports:
                prepared.ports.append((port_id, vf_address))

    def discard(self, migration: str, port_id: str) -> None:
        """Forget one port of a migration (its device went already)."""
        with self._lock:
            prepared = self._migrations.get(migration)
            if prepared is not None:
                prepared.ports = [p for p in prepared.ports
                                  if p[0] != port_id]

    def migrations(self) -> list[str]:
        with self._lock:
            return list(self._migrations)

    def instance_of(self, migration: str) -> str | None:
        """The UUID of the instance of a prepared migration."""
        with self._lock:
            prepared = self._migrations.get(migration)
            return prepared.instance_uuid if prepared else None

    def of_instance(self, instance_uuid: str) -> list[str]:
        """The UUIDs of the instance's prepared migrations."""
        with self._lock:
            return [m for m, p in self._migrations.items()
                    if p.instance_uuid == instance_uuid]

    def forget_instance(self, instance_uuid: str) -> None:
        """The instance arrived: its devices here are its own now."""
        with self._lock:
            for migration in [m for m, p in self._migrations.items()
                              if p.instance_uuid == instance_uuid]:
                del self._migrations[migration]

    def port_ids(self) -> set[str]:
        """The ports of every prepared migration (the orphan sweep's)."""
        with self._lock:
            return {port for p in self._migrations.values()
                    for port, _ in p.ports}

    @contextlib.contextmanager
    def ending(self, migration: str) -> ty.Iterator[
            list[tuple[str, str | None]]]:
        """Forget a migration; yield the ports whose devices may go.

        Those of its ports that no other prepared migration holds (a
        re-migration of the same instance to this host, prepared before
        this one's cleanup); held under the lock, so that no preparation
        adds a port while the caller releases it.
        """
        with self._lock:
            prepared = self._migrations.pop(migration, None)
            held = {port for p in self._migrations.values()
                    for port, _ in p.ports}
            yield [p for p in (prepared.ports if prepared else [])
                   if p[0] not in held]


#: statuses of a live migration that ended without the instance moving
_FAILED = frozenset({'failed', 'error', 'cancelled'})


def _ended(context: ty.Any, migration: str) -> bool | None:
    """Whether a prepared migration failed.

    :returns: True when it failed (or is gone), False when it completed
        (the devices are its instance's), None while it is not over.
    """
    try:
        status = objects.Migration.get_by_uuid(context, migration).status
    except exception_nova.MigrationNotFound:
        status = None
    if status is not None and status not in _FAILED:
        return False if status == 'completed' else None
    return True


def _instance_here(context: ty.Any, uuid: str, host: str) -> bool:
    try:
        return objects.Instance.get_by_uuid(context, uuid).host == host
    except exception_nova.InstanceNotFound:
        return False


def sweep(driver: ty.Any, host: str) -> None:
    """Release the devices of prepared migrations that failed.

    Run by the periodic resource update; never raises.
    """
    incoming = driver.vdpa_incoming
    migrations = incoming.migrations()
    if not migrations:
        return
    context = nova_context.get_admin_context()
    for migration in migrations:
        try:
            ended = _ended(context, migration)
            uuid = incoming.instance_of(migration)
            if ended:
                ended = uuid is not None and not _instance_here(
                    context, uuid, host)
            elif ended is None:
                continue
        except Exception:  # the resource update must go on
            LOG.exception('Could not read live migration %s', migration)
            continue
        with incoming.ending(migration) as ports:
            for port_id, vf in (ports if ended else ()):
                LOG.info('Releasing the vDPA device of port %(port)s, made '
                         'for live migration %(migration)s, which failed',
                         {'port': port_id, 'migration': migration})
                driver.vif_driver.releases.release(port_id, vf,
                                                   instance_uuid=uuid)

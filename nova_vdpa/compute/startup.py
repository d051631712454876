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

"""Start-up reconciliation: the host's devices from Nova's instances.

``init_host`` calls :func:`reconcile` before the compute manager looks at
any instance (and so before ``resume_guests_state_on_host_boot`` restarts
guests). A host reboot wiped the kernel's devices; a crash may have left
devices of ports that are gone. The record is the instances Nova has on
this host and their ports (the info cache's network_info), never a file of
ours:

* every vdpa VIF of an instance on this host (any state: a stopped or
  shelved guest keeps its device, as before the restart) is an expected
  :class:`~nova_vdpa.allocator.PortRequest`: MAC, the network's MTU, the
  VF of its binding profile, queue pairs as the VIF driver decides them;
* an instance with a migration in progress to or from this host (resize,
  cold or live migration, evacuation) is not read from its info cache,
  whose binding may name the other host's VF: its device of ours, if this
  host has one, is expected exactly as the kernel has it, on whichever VF
  it is (kept, never deleted, never moved); a missing one is left to the
  migration's own ``get_config``. The devices kept for a live migration
  to this host are remembered again as prepared by that migration
  (:class:`~nova_vdpa.compute.incoming.Incoming`), so that the periodic
  update releases them if Nova marks it failed;
* :meth:`~nova_vdpa.allocator.Allocator.reconcile` then creates what is
  missing and deletes devices of ours that no expected port names and no
  process holds; devices without our prefix are never touched;
* held devices of ours that no port expects, and those whose deletion
  failed, go to the deferred-release queue that the periodic resource
  update retries.

The same instances and ports (:func:`expected_ports`) tell the periodic
orphan sweep (:mod:`nova_vdpa.compute.orphans`) which devices are used.

Nothing here fails nova-compute's start: a bad port is logged with its
instance (with its traceback when the error is not one of ours), a kernel
error is logged, and the service goes on with the other ports.
"""

import typing as ty

import nova.context as nova_context
import nova.exception as nova_exception
import nova.objects as objects
from oslo_log import log as logging

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa import exception

LOG = logging.getLogger(__name__)

_INSTANCE_ATTRS = ['info_cache', 'flavor', 'system_metadata']


def _vdpa_vifs(vif_driver: ty.Any, instance: ty.Any) -> list[ty.Any]:
    """The os-vif objects of the instance's vdpa VIFs with a VF."""
    out = []
    for vif in instance.get_network_info():
        vif_obj = vif_driver._vdpa_vif(vif)
        if vif_obj is None:
            continue
        if not vif_driver.vf_address(vif_obj):
            LOG.warning('vdpa port %s has no VF (binding profile pci_slot): '
                        'no device is made for it.', vif_obj.id,
                        instance=instance)
            continue
        out.append(vif_obj)
    return out


def _request(vif_driver: ty.Any, instance: ty.Any,
             vif_obj: ty.Any) -> vdpa_allocator.PortRequest:
    image_meta = objects.ImageMeta.from_instance(instance)
    return vif_driver._request(vif_obj, image_meta, instance.flavor)


def _as_it_is(allocator: vdpa_allocator.Allocator, vf_candidates: list[str],
              port_id: str) -> vdpa_allocator.PortRequest | None:
    """A request the port's existing device of ours already satisfies.

    :param vf_candidates: VFs that may serve it; the one whose management
        device is the device's is used, or else the device's own VF.
    :returns: None when this host has no device of ours for the port.
    """
    for vf in vf_candidates:
        try:
            found = allocator.lookup(port_id, vf)
        except exception.VdpaAllocatorError:
            continue
        if found is not None and found.mgmtdev.startswith('pci/'):
            # the device of a migration to this host is on the VF this
            # host claimed, which the info cache may not name yet
            vf_candidates = vf_candidates + [found.mgmtdev[len('pci/'):]]
        break
    for vf in vf_candidates:
        try:
            found = allocator.lookup(port_id, vf)
            if found is None or not found.owned:
                return None
            if allocator.management_device(vf) != found.mgmtdev:
                continue
        except exception.VdpaAllocatorError:
            continue
        return vdpa_allocator.PortRequest(
            port_id=port_id, vf_address=vf, mac=found.config.mac or '',
            mtu=found.config.mtu)
    return None


def _migrating(context: ty.Any, driver: ty.Any, host: str) -> set[str]:
    """UUIDs of instances migrating to or from this host now."""
    uuids = set()
    for node in driver.get_available_nodes():
        migrations = objects.MigrationList.get_in_progress_by_host_and_node(
            context, host, node)
        for migration in migrations:
            uuids.add(migration.instance_uuid)
    return uuids


def _instances(driver: ty.Any, host: str,
               context: ty.Any) -> tuple[dict[str, ty.Any], set[str]]:
    """The instances whose ports may have a device on this host.

    Those on this host and those migrating to or from it.

    :returns: UUID -> instance, and the UUIDs of the migrating ones.
    """
    instances = {i.uuid: i for i in objects.InstanceList.get_by_host(
        context, host, expected_attrs=_INSTANCE_ATTRS)}
    # Without the migrations no device of a migration would be safe: a
    # failure here stops the whole reconciliation (the caller logs it).
    migrating = _migrating(context, driver, host)
    for uuid in migrating - set(instances):
        try:
            instances[uuid] = objects.Instance.get_by_uuid(
                context, uuid, expected_attrs=_INSTANCE_ATTRS)
        except Exception as e:  # deleted meanwhile, say
            LOG.warning('Migrating instance %s could not be read: %s', uuid,
                        e)
    return instances, migrating


def expected_ports(driver: ty.Any, host: str,
                   context: ty.Any) -> set[str] | None:
    """The vdpa ports of every instance on, or migrating to or from, here.

    The same instances :func:`reconcile` expects devices for, every vdpa
    VIF of theirs (with a VF or not), read again at each call.

    :returns: the port ids; None when the ports of one of the instances
        could not be read (then no port is known not to be expected).
    :raises: what reading the instances and migrations raises.
    """
    instances, _ = _instances(driver, host, context)
    ports = set()
    for instance in instances.values():
        try:
            for vif in instance.get_network_info():
                vif_obj = driver.vif_driver._vdpa_vif(vif)
                if vif_obj is not None:
                    ports.add(vif_obj.id)
        except nova_exception.NovaException as e:
            LOG.warning('The vdpa ports of this instance could not be '
                        'read: %s', e, instance=instance)
            return None
    return ports


def expected_requests(driver: ty.Any, host: str,
                      context: ty.Any) -> tuple[
                          list[vdpa_allocator.PortRequest], dict[str, ty.Any]]:
    """The requests of every port that should have a device on this host.

    :returns: the requests, and port id -> instance (for the log).
    """
    vif_driver = driver.vif_driver
    allocator = driver.vdpa_allocator
    instances, migrating = _instances(driver, host, context)
    requests = []
    owners = {}
    simulated = sorted(vif_driver.simulated_vfs)
    for uuid, instance in instances.items():
        try:
            vif_objs = _vdpa_vifs(vif_driver, instance)
        except Exception as e:  # one bad instance never stops the start
            LOG.error('The vdpa ports of this instance are not reconciled: '
                      '%s', e, instance=instance)
            continue
        for vif_obj in vif_objs:
            owners[vif_obj.id] = instance
            try:
                if uuid in migrating:
                    request = _as_it_is(allocator,
                                        [vif_obj.dev_address] + simulated,
                                        vif_obj.id)
                    if request is None:
                        continue
                else:
                    request = _request(vif_driver, instance, vif_obj)
            except exception.NovaVdpaException as e:
                LOG.error('vdpa port %s is not reconciled: %s', vif_obj.id,
                          e, instance=instance)
                continue
            except Exception:  # one bad port never stops the others
                LOG.exception('vdpa port %s is not reconciled', vif_obj.id,
                              instance=instance)
                continue
            requests.append(request)
    return requests, owners


def _remember_incoming(driver: ty.Any, host: str, context: ty.Any,
                       requests: list[vdpa_allocator.PortRequest],
                       owners: dict[str, ty.Any]) -> None:
    """The kept devices of live migrations to this host, as prepared."""
    kept = {r.port_id: r.vf_address for r in requests}
    for node in driver.get_available_nodes():
        for migration in (objects.MigrationList
                          .get_in_progress_by_host_and_node(context, host,
                                                            node)):
            if migration.migration_type != 'live-migration' or \
                    migration.dest_compute != host:
                continue
            for port_id, instance in owners.items():
                if instance.uuid == migration.instance_uuid and \
                        port_id in kept:
                    driver.vdpa_incoming.add(migration.uuid, instance.uuid,
                                             port_id, kept[port_id])


def reconcile(driver: ty.Any,
              host: str) -> vdpa_allocator.ReconcileResult | None:
    """Reconcile the host's devices with Nova's instances; never raises.

    :param driver: the LibvirtVdpaDriver (``vif_driver``,
        ``vdpa_allocator``).
    :returns: what the allocator did; None when it could not run.
    """
    context = nova_context.get_admin_context()
    try:
        requests, owners = expected_requests(driver, host, context)
    except Exception:
        LOG.exception('vDPA devices are not reconciled at start-up: the '
                      'instances of this host could not be read.')
        return None
    try:
        result = driver.vdpa_allocator.reconcile(requests)
    except exception.NovaVdpaException as e:
        LOG.error('vDPA devices are not reconciled at start-up: %s', e)
        return None
    except Exception:  # a bug here must not stop nova-compute
        LOG.exception('vDPA devices are not reconciled at start-up')
        return None
    try:
        _remember_incoming(driver, host, context, requests, owners)
    except Exception:  # the sweep then leaves them to the next restart
        LOG.exception('The vDPA devices kept for live migrations to this '
                      'host are not remembered')
    releases = driver.vif_driver.releases
    for key, error in sorted(result.failed.items()):
        instance = owners.get(key)
        if instance is not None:
            LOG.error('The vDPA device of port %(port)s could not be made '
                      'at start-up: %(error)s',
                      {'port': key, 'error': error}, instance=instance)
        elif vdpa_allocator.is_ours(key):
            releases.defer(_port_of(key), None,
                           exception.NovaVdpaException(error))
    for name in result.held:
        # The allocator found it held; the queue's line names the holder.
        releases.defer(_port_of(name), None, exception.VdpaDeviceInUse(
            device=name, mgmtdev='-', chardev='-', pid='unknown',
            cmdline='-', action='delete'))
    return result


def _port_of(name: str) -> str:
    return name[len(vdpa_allocator.DEVICE_PREFIX):]

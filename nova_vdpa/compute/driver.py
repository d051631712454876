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

"""``LibvirtVdpaDriver``: Nova's libvirt driver with vDPA devices on demand.

Load it with ``compute_driver = nova_vdpa.LibvirtVdpaDriver`` (nova's
loader imports ``nova.virt.nova_vdpa``, a one-line re-export). It differs
from nova 34.0.0's ``LibvirtDriver`` in these places only:

* its VIF driver (:mod:`nova_vdpa.compute.vif`) creates the vDPA device of
  each ``vnic_type=vdpa`` port before the guest XML names it, gives the
  guest the full ``<interface type='vdpa'>``, and releases the device
  after unplug;
* ``_get_pci_passthrough_devices`` types the VFs that can carry a vDPA
  device as ``vdpa`` at every periodic update
  (:mod:`nova_vdpa.compute.inventory`);
* the detaches Nova makes before a suspend and a live migration
  (``_detach_direct_passthrough_ports``, ``_detach_direct_passthrough_vifs``)
  keep the devices: the ports stay bound to the host;
* a live migration leaves a vdpa port in the guest, instead of detaching
  it, when both hosts can migrate it (:mod:`nova_vdpa.compute.migration`):
  ``pre_live_migration`` makes the destination's devices and records them
  in the migration data, ``_detach_direct_passthrough_vifs`` skips those
  ports, ``_reattach_instance_vifs`` does not attach them again, and the
  destination releases the devices of a migration that failed
  (``rollback_live_migration_at_destination``, or the periodic update
  below);
* it registers the ``[nova_vdpa]`` options and checks the private Nova
  names it relies on (:mod:`nova_vdpa.compute.overrides`) when it is
  constructed, not when it is imported;
* with ``[nova_vdpa] offload_checks``, ``init_host`` logs a summary of the
  host's offload checks (:mod:`nova_vdpa.network.checks`); it never fails
  the service;
* ``init_host`` reconciles the host's devices with Nova's instances
  before the compute manager resumes any guest
  (:mod:`nova_vdpa.compute.startup`);
* ``get_available_resource``, which the compute manager's
  ``update_available_resource`` periodic task calls for each node (every
  60 s with nova 34.0.0's default ``update_resources_interval = 0``, and
  once at start-up), first retries the releases deferred while a process
  held the device (:mod:`nova_vdpa.allocator.deferred`), releases the
  devices of failed incoming live migrations, and then devices of ours
  that nothing on the host uses (:mod:`nova_vdpa.compute.orphans`): no
  thread of our own.
"""

import typing as ty

from nova.network import model as network_model
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt import driver as libvirt_driver
from oslo_config import cfg
from oslo_log import log as logging

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa.compute import inventory
from nova_vdpa.compute import migration
from nova_vdpa.compute import orphans
from nova_vdpa.compute import overrides
from nova_vdpa.compute import startup
from nova_vdpa.compute import vif
from nova_vdpa import conf as vdpa_conf
from nova_vdpa import exception
from nova_vdpa.network import checks

LOG = logging.getLogger(__name__)
CONF = cfg.CONF

#: What builds the allocator from the ``[nova_vdpa]`` options; tests put
#: one here that reaches a fake kernel.
allocator_factory: ty.Callable[..., vdpa_allocator.Allocator] = (
    vdpa_allocator.Allocator)

# [nova_vdpa] options handed to the allocator when the group has them.
_ALLOCATOR_OPTIONS = ('management_devices', 'simulated_vfs',
                      'delete_timeout')


def option_group() -> str:
    """The name of our option group (``nova_vdpa``)."""
    return vdpa_conf.vdpa_group.name


def _allocator_options(conf: cfg.ConfigOpts) -> dict[str, ty.Any]:
    """The allocator's keyword arguments from our option group."""
    values = conf[option_group()]
    options = {name: values[name] for name in _ALLOCATOR_OPTIONS
               if name in values}
    if 'simulated_vfs' in options:
        # <VF address>=<management device>[@<device>]; the allocator
        # checks each value.
        options['simulated_vfs'] = dict(
            entry.partition('=')[::2] for entry in options['simulated_vfs'])
    return options


class LibvirtVdpaDriver(libvirt_driver.LibvirtDriver):
    """Nova's libvirt driver, creating a vDPA device per vdpa port."""

    def __init__(self, virtapi: ty.Any, read_only: bool = False) -> None:
        vdpa_conf.register_opts(CONF)
        super().__init__(virtapi, read_only)
        overrides.check(self)
        self.vdpa_allocator = allocator_factory(**_allocator_options(CONF))
        #: live migrations this host prepared as their destination
        self.vdpa_incoming = migration.Incoming()
        self.vdpa_orphans = orphans.OrphanSweep()
        group = CONF[option_group()]
        offload = ('offload_checks' not in group) or group.offload_checks
        self.vif_driver = vif.LibvirtVdpaVIFDriver(
            self._host, self.vdpa_allocator,
            offload_checks=offload,
            simulated_vfs=frozenset(
                _allocator_options(CONF).get('simulated_vfs', ())))

    def init_host(self, host: str) -> None:
        super().init_host(host)
        startup.reconcile(self, host)
        if self.vif_driver.offload_checks:
            self._log_offload_checks()

    def get_available_resource(self, nodename: str) -> dict[str, ty.Any]:
        """Nova's, after one retry of the deferred releases."""
        self.retry_releases()
        return super().get_available_resource(nodename)

    def retry_releases(self) -> None:
        """Retry the deferred releases once; never raises.

        First the devices of incoming live migrations that failed; last
        the orphan sweep (:mod:`nova_vdpa.compute.orphans`).
        """
        migration.sweep(self, CONF.host)
        try:
            self.vif_driver.releases.retry()
        except Exception:  # the resource update must go on
            LOG.exception('Retrying the deferred vDPA releases failed')
        try:
            self.vdpa_orphans.sweep(self, CONF.host)
        except Exception:  # the resource update must go on
            LOG.exception('The vDPA orphan sweep failed')

    def _log_offload_checks(self) -> None:
        """Log the host's offload summary; never raises, never waits long."""
        try:
            vfs = [vf for vf in self.vdpa_allocator.vf_management_devices()
                   if vf not in self.vif_driver.simulated_vfs]
            results = checks.run_host_checks(vfs, vif.ovsdb_connection(),
                                             timeout=vif.OVSDB_TIMEOUT)
        except exception.NovaVdpaException as e:
            LOG.error('vdpa offload checks could not run: %s', e)
            return
        except Exception:  # a bug in a check must not stop nova-compute
            LOG.exception('vdpa offload checks failed')
            return
        checks.log_summary(results, LOG)

    def _get_pci_passthrough_devices(self) -> str:
        """Nova's PCI inventory, with VFs typed vdpa from the kernel now.

        Nova's method is cached for the life of the process; the VFs that
        can carry a vDPA device are read fresh at each call.
        """
        devices = super()._get_pci_passthrough_devices()
        vfs = set(self.vdpa_allocator.vf_management_devices())
        vfs.update(_vf_of(dev.mgmtdev)
                   for dev in self.vdpa_allocator.owned_devices())
        return inventory.mark_vdpa_vfs(devices, vfs)

    def _detach_direct_passthrough_ports(self, context, instance, guest):
        """Nova's suspend-time detach; the vdpa devices stay (resume)."""
        with self.vif_driver.keeping_devices(instance.uuid):
            super()._detach_direct_passthrough_ports(context, instance, guest)

    def _detach_direct_passthrough_vifs(self, context, migrate_data,
                                        instance):
        """Nova's detach before a live migration; the devices stay.

        The source's vdpa devices stay until the migration ends: released
        by ``post_live_migration_at_source``'s unplug once the source guest
        is gone, reattached by ``rollback_live_migration_at_source``.
        """
        staying = migration.staying_vifs(self, instance, migrate_data)
        if staying:
            migrate_data = migrate_data.obj_clone()
            migrate_data.vifs = [v for v in migrate_data.vifs
                                 if v.port_id not in staying]
        with self.vif_driver.keeping_devices(instance.uuid):
            super()._detach_direct_passthrough_vifs(context, migrate_data,
                                                    instance)

    def _reattach_instance_vifs(self, context, instance, network_info):
        """Nova's, for the vdpa interfaces the guest does not have.

        Nova counts a guest's interfaces by their ``<target dev>``, which
        a vdpa interface has none of, and then attaches every direct
        port again: a vdpa port that stayed in the guest through a live
        migration (on the destination, or on the source after a failure)
        would be attached twice. Those are left out.
        """
        guest = self._host.get_guest(instance)
        present = {
            dev.mac_addr.lower() for dev in guest.get_all_devices(
                vconfig.LibvirtConfigGuestInterface)
            if dev.net_type == 'vdpa' and dev.mac_addr}
        missing = [vif for vif in network_info
                   if vif['vnic_type'] != network_model.VNIC_TYPE_VDPA
                   or vif['address'].lower() not in present]
        super()._reattach_instance_vifs(
            context, instance, network_model.NetworkInfo(missing))

    def pre_live_migration(self, context, instance, block_device_info,
                           network_info, disk_info, migrate_data):
        """Nova's, then the vdpa devices of ports that migrate as they are.

        After Nova plugged the VIFs; a port whose device cannot be made
        fails the migration before it starts (Nova rolls back).
        """
        migrate_data = super().pre_live_migration(
            context, instance, block_device_info, network_info, disk_info,
            migrate_data)
        migration.prepare_destination(self, instance, migrate_data)
        return migrate_data

    def post_live_migration_at_destination(self, context, instance,
                                           network_info,
                                           block_migration=False,
                                           block_device_info=None):
        """Nova's; the instance's devices here are now its own."""
        super().post_live_migration_at_destination(
            context, instance, network_info, block_migration,
            block_device_info)
        self.vdpa_incoming.pop(instance.uuid)

    def rollback_live_migration_at_destination(self, context, instance,
                                               network_info,
                                               block_device_info,
                                               destroy_disks=True,
                                               migrate_data=None):
        """Nova's (whose unplug releases); then what the sweep would."""
        try:
            super().rollback_live_migration_at_destination(
                context, instance, network_info, block_device_info,
                destroy_disks, migrate_data)
        finally:
            for port_id, vf in self.vdpa_incoming.pop(instance.uuid):
                self.vif_driver.release(instance, port_id, vf)


def _vf_of(mgmtdev: str) -> str:
    """``pci/0000:06:00.1`` -> ``0000:06:00.1``; others pass through."""
    bus, _, name = mgmtdev.partition('/')
    return name if bus == 'pci' else mgmtdev

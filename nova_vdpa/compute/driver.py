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
from Nova's ``LibvirtDriver`` (of the releases it supports:
:mod:`nova_vdpa.compute.releases`) in these places only:

* its VIF driver (:mod:`nova_vdpa.compute.vif`) creates the vDPA device of
  each ``vnic_type=vdpa`` port before the guest XML names it, gives the
  guest the full ``<interface type='vdpa'>``, and releases the device
  after unplug;
* ``_get_pci_passthrough_devices`` types the VFs that can carry a vDPA
  device as ``vdpa`` at every periodic update, except those Nova's PCI
  tracker holds for a guest as ``type-VF`` (read from the compute
  manager's resource tracker through ``ComputeVirtAPI._compute``, or from
  the database before the tracker exists), and
  keeps the last good typing while the kernel cannot answer
  (:mod:`nova_vdpa.compute.inventory`);
* the detaches Nova makes before a suspend and a live migration
  (``_detach_direct_passthrough_ports``, ``_detach_direct_passthrough_vifs``)
  keep the devices: the ports stay bound to the host;
* with ``[nova_vdpa] live_migration_without_unplug``, a live migration
  leaves a vdpa port in the guest, instead of detaching it, when both
  hosts can migrate it (:mod:`nova_vdpa.compute.migration`):
  ``pre_live_migration`` makes the destination's devices and records them
  in the migration data, ``_live_migration_operation`` decides on the
  source which ports stay and lets the VIF driver read their records while
  Nova builds the destination XML, ``_detach_direct_passthrough_vifs``
  skips those ports, ``_reattach_instance_vifs`` does not attach them
  again, and the destination releases the devices of a migration that
  failed (``rollback_live_migration_at_destination``, or the periodic
  update below), by migration (:mod:`nova_vdpa.compute.incoming`);
* it registers the ``[nova_vdpa]`` options and, when it is constructed
  (not when it is imported), refuses to start on an installation
  Nova's loader does not serve (:mod:`nova_vdpa.compute.install`), on a
  Nova release it does not support, or when a Nova internal it relies on
  changed (:mod:`nova_vdpa.compute.overrides`);
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

import contextlib
import typing as ty

from nova import context as nova_context
from nova import exception as nova_exception
from nova.network import model as network_model
import nova.objects as objects
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt import driver as libvirt_driver
from oslo_config import cfg
from oslo_log import log as logging

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa.compute import incoming
from nova_vdpa.compute import install
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
                      'delete_timeout', 'read_timeout')


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


def _log_empty_allow_list(conf: cfg.ConfigOpts) -> None:
    """One error at start when no management device is allowed.

    An empty ``management_devices`` allows none (fail closed): the driver
    still starts, as Nova's libvirt driver for every other port, but no
    VF is typed vdpa and no vdpa port can be built here.
    """
    if not conf[option_group()].management_devices:
        LOG.error('No vDPA management device is allowed, so no vdpa port '
                  'can be built on this host: set [%s] management_devices '
                  'in nova.conf (and in the configuration files of the '
                  'nova-vdpa privsep daemon) to the management devices '
                  'nova-vdpa may use, e.g. pci/0000:08:00.2.',
                  option_group())


class LibvirtVdpaDriver(libvirt_driver.LibvirtDriver):
    """Nova's libvirt driver, creating a vDPA device per vdpa port."""

    def __init__(self, virtapi: ty.Any, read_only: bool = False) -> None:
        overrides.check_release()
        vdpa_conf.register_opts(CONF)
        super().__init__(virtapi, read_only)
        found = install.layout()
        install.check(found)
        mixed = install.mixed(found)
        if mixed is not None:
            LOG.warning('nova-vdpa: %s', mixed)
        overrides.check(self)
        self.vdpa_allocator = allocator_factory(**_allocator_options(CONF))
        _log_empty_allow_list(CONF)
        #: live migrations this host prepared as their destination
        self.vdpa_incoming = incoming.Incoming()
        #: [nova_vdpa] live_migration_without_unplug
        self.vdpa_without_unplug = migration.enabled(CONF)
        self.vdpa_hostname: str = CONF.host
        #: the last VFs typed vdpa, for periods the kernel cannot answer
        self.vdpa_typing = inventory.LastTyping()
        self.vdpa_orphans = orphans.OrphanSweep()
        group = CONF[option_group()]
        offload = ('offload_checks' not in group) or group.offload_checks
        self.vif_driver = vif.LibvirtVdpaVIFDriver(
            self._host, self.vdpa_allocator,
            offload_checks=offload,
            simulated_vfs=frozenset(
                _allocator_options(CONF).get('simulated_vfs', ())))

    def init_host(self, host: str) -> None:
        #: this compute service's host name (its migrations' dest_compute)
        self.vdpa_hostname = host
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
        incoming.sweep(self, self.vdpa_hostname)
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
                                             timeout=vif.ovsdb_timeout(),
                                             ovn_rundir=vif.ovn_rundir())
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
        can carry a vDPA device are read fresh at each call. A VF Nova's
        PCI tracker holds for a guest as ``type-VF`` (a ``direct`` port)
        is never re-typed. When the kernel cannot answer (vdpa not
        loaded, a read past its deadline), the rest of the inventory is
        still reported, with the last good vdpa typing (none before the
        first): a failed read must not fail Nova's resource update, which
        would leave the host without a compute node record at start-up.
        """
        devices = super()._get_pci_passthrough_devices()
        try:
            vfs = set(self.vdpa_allocator.vf_management_devices())
            vfs.update(_vf_of(dev.mgmtdev)
                       for dev in self.vdpa_allocator.owned_devices())
        except exception.VdpaKernelError as e:
            vfs = self.vdpa_typing.failed(e)
        else:
            self.vdpa_typing.read(vfs)
        vfs.difference_update(inventory.vfs_in_use(self._nova_pci_devices()))
        return inventory.mark_vdpa_vfs(devices, vfs)

    def _nova_pci_devices(self) -> list[ty.Any]:
        """This host's devices in Nova's PCI tracker (``PciDevice``).

        The compute manager's resource tracker, through the virt API
        (``ComputeVirtAPI._compute``): the in-memory view of claimed and
        allocated devices, no database round trip per period. Before the
        tracker exists - the first resource update after a start, which
        is the only inventory nova 34.0.0's tracker takes in
        (``ResourceTracker._setup_pci_tracker``) - the same rows are read
        from the database, once. Without a compute manager (a driver
        loaded alone) nothing is known.
        """
        compute = getattr(self.virtapi, '_compute', None)
        if compute is None:
            return []
        tracker = getattr(getattr(compute, 'rt', None), 'pci_tracker', None)
        if tracker is not None:
            return list(tracker.pci_devs)
        ctx = nova_context.get_admin_context()
        try:
            node = objects.ComputeNode.get_by_host_and_nodename(
                ctx, CONF.host, self._host.get_hostname())
        except nova_exception.ComputeHostNotFound:
            return []  # the first start: nothing is claimed yet
        return list(objects.PciDeviceList.get_by_compute_node(ctx, node.id))

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
        staying = migration.staying_ports()
        if staying:
            migrate_data = migrate_data.obj_clone()
            migrate_data.vifs = [v for v in migrate_data.vifs
                                 if v.port_id not in staying]
        with self.vif_driver.keeping_devices(instance.uuid):
            super()._detach_direct_passthrough_vifs(context, migrate_data,
                                                    instance)

    def _live_migration_operation(self, context, instance, dest,
                                  block_migration, migrate_data, guest,
                                  device_names):
        """Nova's, deciding first which vdpa ports stay in the guest.

        Nova's detaches the other ports and builds the destination XML in
        this thread: only meanwhile may the VIF driver build a port's
        interface from the destination's record.
        """
        with migration.building_destination_xml(self, instance,
                                                migrate_data):
            return super()._live_migration_operation(
                context, instance, dest, block_migration, migrate_data,
                guest, device_names)

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
        migration.prepare_destination(self, context, instance, migrate_data)
        return migrate_data

    def post_live_migration_at_destination(self, context, instance,
                                           network_info,
                                           block_migration=False,
                                           block_device_info=None):
        """Nova's; the instance's devices here are now its own."""
        super().post_live_migration_at_destination(
            context, instance, network_info, block_migration,
            block_device_info)
        self.vdpa_incoming.forget_instance(instance.uuid)

    def rollback_live_migration_at_destination(self, context, instance,
                                               network_info,
                                               block_device_info,
                                               destroy_disks=True,
                                               migrate_data=None):
        """Nova's (whose unplug releases); then what the sweep would.

        Nova's unplug keeps the devices while another migration of the
        instance to this host is prepared (a quick re-migration, prepared
        before this rollback arrived); of this migration's devices, only
        those no other prepared migration holds are released.
        """
        this = migration.migration_uuid(migrate_data)
        prepared = self.vdpa_incoming.of_instance(instance.uuid)
        ending = [this] if this is not None else prepared
        others = set(prepared) - set(ending)
        keeping = (self.vif_driver.keeping_devices(instance.uuid) if others
                   else contextlib.nullcontext())
        try:
            with keeping:
                super().rollback_live_migration_at_destination(
                    context, instance, network_info, block_device_info,
                    destroy_disks, migrate_data)
        finally:
            for uuid in ending:
                with self.vdpa_incoming.ending(uuid) as ports:
                    for port_id, vf in ports:
                        self.vif_driver.release(instance, port_id, vf)


def _vf_of(mgmtdev: str) -> str:
    """``pci/0000:06:00.1`` -> ``0000:06:00.1``; others pass through."""
    bus, _, name = mgmtdev.partition('/')
    return name if bus == 'pci' else mgmtdev

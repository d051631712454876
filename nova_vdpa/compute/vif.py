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

"""The VIF driver: a vDPA device per ``vnic_type=vdpa`` port.

:class:`LibvirtVdpaVIFDriver` is Nova's ``LibvirtGenericVIFDriver`` with two
changes, for vdpa VIFs only; every other VIF goes to Nova's code
unchanged, and os-vif still plugs the VF representor for vdpa ones.

``get_config`` allocates the port's device on the VF Nova claimed (what
``nova_to_osvif_vif`` reads from the binding profile's ``pci_slot``) and
returns the designer's full ``<interface type='vdpa'>``. Nova calls it
wherever it builds the guest XML (spawn, hard reboot, resize and migration
destinations, unshelve, evacuation) and, on interface attach, after
``plug`` and before attaching: so the device exists before any XML names
it. The calls that only rebuild the config of a running guest (detach,
suspend, the detach before a live migration) get the device the guest
has, as it is: a device whose chardev this instance's libvirt domain
names is looked up, never compared with the port or made again (a port
whose MTU changed meanwhile would otherwise need a device the guest
holds). One that another instance's domain names is refused
(:class:`~nova_vdpa.exception.VdpaDeviceHeldByAnotherGuest`): a port
moved to another instance never gets a device a guest still holds. Only
a device no domain names goes to the allocator, which makes it again
when it is stale.

With ``[nova_vdpa] offload_checks`` (VFs of ``simulated_vfs`` excepted),
``get_config`` first checks that the VF can be plugged into Open vSwitch
(its PF in switchdev mode, one representor) and fails the build, to be
rescheduled, when it cannot; on an ML2/OVN chassis (read from OVSDB,
:mod:`nova_vdpa.network.mechanism`) also when ovn-controller is not
running or not connected to its southbound database, since no port could
be claimed. ``plug`` checks after os-vif's plug that the representor's row
in br-int is what the OVS agent or ovn-controller needs, and warns if not;
on OVN it logs whether ``ovn-installed`` is set yet.

``unplug`` releases the device after os-vif's unplug, even when that
failed (Nova's cleanup swallows its error, and a device left behind
would refuse the VF's next one), except while the
driver detaches an instance's vdpa interfaces for a while (suspend, live
migration: :meth:`LibvirtVdpaVIFDriver.keeping_devices`) and the port
stays bound to the host. Nova unplugs after the guest is gone or the
interface detached, so QEMU has closed the chardev; when it has not (a
paused guest keeps a detached device open), the release is deferred
(:mod:`nova_vdpa.allocator.deferred`): unplug returns at once, the log
names the domain that holds the device, and the driver's periodic resource
update retries it. Allocating the port again drops its pending release.
"""

import contextlib
import threading
import typing as ty

from nova.network import model as network_model
from nova.network import os_vif_util
import nova.objects as objects
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt import vif as libvirt_vif
from os_vif.objects import vif as osv_vifs
from oslo_config import cfg
from oslo_log import log as logging

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa.allocator import deferred
from nova_vdpa.compute import errors
from nova_vdpa.compute import holders
from nova_vdpa.compute import migration
from nova_vdpa import conf as vdpa_conf
from nova_vdpa import exception
from nova_vdpa.libvirt import designer
from nova_vdpa.network import checks
from nova_vdpa.network import mechanism
from nova_vdpa.network import ovsdb

LOG = logging.getLogger(__name__)
CONF = cfg.CONF

#: Seconds we wait for OVSDB (to connect, then per read) when ``[nova_vdpa]
#: ovsdb_timeout`` is not registered: an absent ovsdb-server must not hold
#: up nova-compute's start or a plug.
OVSDB_TIMEOUT = vdpa_conf.DEFAULT_OVSDB_TIMEOUT


def ovsdb_timeout() -> float:
    """``[nova_vdpa] ovsdb_timeout``, or its default before registration."""
    try:
        return CONF[vdpa_conf.vdpa_group.name].ovsdb_timeout
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
        return OVSDB_TIMEOUT


def ovn_rundir() -> str | None:
    """``[nova_vdpa] ovn_rundir``, or None (the environment's or default)."""
    try:
        return CONF[vdpa_conf.vdpa_group.name].ovn_rundir
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
        return None


def ovsdb_connection() -> str:
    """os-vif's ``[os_vif_ovs] ovsdb_connection``, or its default.

    os-vif registers the group when its ovs plugin loads, which may not
    have happened (yet) in this process.
    """
    try:
        return CONF.os_vif_ovs.ovsdb_connection or ovsdb.DEFAULT_CONNECTION
    except cfg.NoSuchOptError:
        return ovsdb.DEFAULT_CONNECTION


def _nova_shaped(conf: vconfig.LibvirtConfigGuestInterface
                 ) -> vconfig.LibvirtConfigGuestInterface:
    """Return a Nova interface config that renders as ``conf``.

    Nova finds a live interface to detach with
    ``Guest.get_interface_by_cfg``, which keeps only the parsed devices
    that are instances of ``type(cfg)`` and then compares type, MAC and
    source. Parsed devices are Nova's own class, never our subclass, so a
    config of our class would never match and the interface would stay in
    the guest while we release its device. The returned object is of
    Nova's class with the identity fields set, and renders the designer's
    XML.
    """
    shaped = vconfig.LibvirtConfigGuestInterface()
    shaped.net_type = 'vdpa'
    shaped.mac_addr = conf.mac_addr
    shaped.source_dev = conf.source_dev
    shaped.model = conf.model
    shaped.format_dom = conf.format_dom
    return shaped


class LibvirtVdpaVIFDriver(libvirt_vif.LibvirtGenericVIFDriver):
    """Nova's generic VIF driver, creating a device for each vdpa port.

    :param host: Nova's ``nova.virt.libvirt.host.Host``.
    :param allocator: the allocator that creates and releases devices.
    :param offload_checks: ``[nova_vdpa] offload_checks``.
    :param simulated_vfs: VF addresses of ``simulated_vfs``, never checked.
    """

    def __init__(self, host: ty.Any, allocator: vdpa_allocator.Allocator,
                 offload_checks: bool = False,
                 simulated_vfs: ty.Collection[str] = ()) -> None:
        super().__init__(host)
        self.allocator = allocator
        #: releases refused while a process holds the device, retried by
        #: the driver's periodic resource update
        self.releases = deferred.DeferredReleases(allocator,
                                                  self._holder_of)
        self.offload_checks = offload_checks
        self.simulated_vfs = frozenset(simulated_vfs)
        # One OVSDB connection for the driver's life, made at first use.
        self._ovsdb: ovsdb.OvsdbReader | None = None
        self._ovsdb_warned = False
        # Instances whose vdpa interfaces are detached for a while (suspend,
        # live migration): their unplug keeps the devices.
        self._kept: set[str] = set()
        self._kept_lock = threading.Lock()

    @contextlib.contextmanager
    def keeping_devices(self, instance_uuid: str) -> ty.Iterator[None]:
        """Unplugs of the instance's VIFs keep their devices meanwhile.

        Nova detaches vdpa interfaces for a while with its own
        ``detach_interface``, which unplugs: before suspending the guest
        (the interfaces come back on resume) and before a live migration
        (they come back on the destination, or on the source when the
        migration fails). The port stays bound to this host throughout,
        so its device stays too; it is released when the port leaves.
        """
        with self._kept_lock:
            self._kept.add(instance_uuid)
        try:
            yield
        finally:
            with self._kept_lock:
                self._kept.discard(instance_uuid)

    def _checked(self, vf_address: str | None) -> bool:
        """Whether the offload checks apply to this VF."""
        return (self.offload_checks and bool(vf_address)
                and vf_address not in self.simulated_vfs)

    @staticmethod
    def _vdpa_vif(vif: ty.Any) -> ty.Any:
        """The os-vif VIF of a vdpa port, or None for any other VIF."""
        if vif.get('vnic_type') != network_model.VNIC_TYPE_VDPA:
            return None
        vif_obj = os_vif_util.nova_to_osvif_vif(vif)
        if not isinstance(vif_obj, osv_vifs.VIFHostDevice):
            return None
        return vif_obj

    @staticmethod
    def vf_address(vif_obj: ty.Any) -> str | None:
        """The VF Nova claimed for a vdpa port, or None if it has none.

        The os-vif VIF's ``dev_address``: the binding profile's
        ``pci_slot``.
        """
        return (vif_obj.dev_address or None) if 'dev_address' in vif_obj \
            else None

    def get_config(self, instance, vif, image_meta, flavor, virt_type):
        vif_obj = self._vdpa_vif(vif)
        if vif_obj is None:
            return super().get_config(instance, vif, image_meta, flavor,
                                      virt_type)
        if not isinstance(image_meta, objects.ImageMeta):
            image_meta = objects.ImageMeta.from_dict(image_meta)
        record = migration.destination_record(vif, vif_obj.id)
        if record is not None:
            # The source builds the destination's interface for a live
            # migration without hot-unplug: that device is the other
            # host's, made by its pre_live_migration. Only then: any
            # other call ignores a record in the profile.
            with errors.translated(instance, vif_obj.id):
                return _nova_shaped(self._designed(
                    vif_obj, record.device(), record.host(), image_meta,
                    flavor))
        with errors.translated(instance, vif_obj.id):
            allocation = self._guests_device(instance, vif_obj)
            if allocation is None:
                if self._checked(self.vf_address(vif_obj)):
                    checks.check_vf_ready(vif_obj.dev_address)
                    self._check_mechanism_ready(vif_obj.dev_address)
                # Before the allocation: a refused guest leaves no device.
                self._check_guest_memory(vif_obj, image_meta, flavor)
                allocation = self.releases.allocate(
                    self._request(vif_obj, image_meta, flavor))
            conf = self._interface_config(allocation, vif_obj, image_meta,
                                          flavor)
        LOG.debug('vDPA device %(dev)s (%(chardev)s) serves port %(port)s',
                  {'dev': allocation.name, 'chardev': allocation.chardev,
                   'port': vif_obj.id}, instance=instance)
        return _nova_shaped(conf)

    def _guests_device(self, instance: ty.Any, vif_obj: ty.Any
                       ) -> vdpa_allocator.Allocation | None:
        """The port's device as it is, when a running guest holds it.

        Nova rebuilds the interface of a running guest (detach, suspend,
        the detach before a live migration) from the port as it is now:
        after a change of the port's MTU, say, the device differs from the
        request and cannot be made again while QEMU holds it. The guest's
        device is used as it is. Looked up, never opened: an open would
        race QEMU's.

        :returns: the device when this instance's domain names its
            chardev; None when no domain does (allocation decides).
        :raises: VdpaDeviceHeldByAnotherGuest when another domain names
            it.
        """
        vf_address = self.vf_address(vif_obj)
        if not vf_address:
            return None
        try:
            found = self.allocator.lookup(vif_obj.id, vf_address)
        except exception.VdpaChardevNotFound:
            return None  # not bound to vhost_vdpa: no guest can hold it
        if found is None:
            return None
        held_by = holders.find(self.host, found.chardev)
        others = [h for h in held_by if h.uuid != instance.uuid]
        if others:
            raise exception.VdpaDeviceHeldByAnotherGuest(
                port_id=vif_obj.id, vf_address=vf_address,
                device=found.name, chardev=found.chardev,
                holder=', '.join('libvirt domain %s (instance %s)'
                                 % (h.domain, h.uuid) for h in others),
                instance=instance.uuid)
        if not held_by:
            return None
        LOG.debug('vDPA device %(dev)s of port %(port)s is in use by this '
                  'guest: used as it is', {'dev': found.name,
                                           'port': vif_obj.id},
                  instance=instance)
        return found

    @staticmethod
    def _request(vif_obj: ty.Any, image_meta: ty.Any,
                 flavor: ty.Any) -> vdpa_allocator.PortRequest:
        """What the allocator needs to know about the port.

        The queue pairs are the designer's, as for the XML's ``queues``
        (Nova's rule, capped by ``[libvirt] max_queues``): the device is
        made with what the guest will use.
        """
        mtu = None
        if 'network' in vif_obj and 'mtu' in vif_obj.network:
            mtu = vif_obj.network.mtu
        return vdpa_allocator.PortRequest(
            port_id=vif_obj.id, vf_address=vif_obj.dev_address,
            mac=str(vif_obj.address), mtu=mtu,
            queue_pairs=designer.queue_pairs(flavor, image_meta,
                                             CONF.libvirt.max_queues))

    def _interface_config(
        self, allocation: vdpa_allocator.Allocation, vif_obj: ty.Any,
        image_meta: ty.Any, flavor: ty.Any,
    ) -> vconfig.LibvirtConfigGuestInterface:
        """The interface of this host's device for the port."""
        return self._designed(vif_obj, designer.device_of(allocation),
                              migration.host_of(self.host.get_connection()),
                              image_meta, flavor)

    @staticmethod
    def _port(vif_obj: ty.Any) -> designer.Port:
        """The designer's view of the port."""
        return designer.Port(
            mac=str(vif_obj.address),
            mtu=(vif_obj.network.mtu if 'network' in vif_obj
                 and 'mtu' in vif_obj.network else None),
            id=vif_obj.id)

    def _check_guest_memory(self, vif_obj: ty.Any, image_meta: ty.Any,
                            flavor: ty.Any) -> None:
        """Refuse a guest the port's device could not reach.

        A device that maps guest memory by virtual address (VDUSE, the
        simulator with ``use_va``) needs shared guest memory, which only
        the flavor (huge pages) or ``[libvirt] file_backed_memory`` give.
        """
        mgmtdev = self.allocator.management_device(vif_obj.dev_address)
        if self.allocator.uses_virtual_addresses(mgmtdev):
            designer.check_guest_memory(
                self._port(vif_obj), mgmtdev, flavor=flavor,
                image_meta=image_meta,
                file_backed_memory=CONF.libvirt.file_backed_memory)

    @classmethod
    def _designed(cls, vif_obj: ty.Any, device: designer.Device,
                  host: designer.Host, image_meta: ty.Any, flavor: ty.Any
                  ) -> vconfig.LibvirtConfigGuestInterface:
        """The one call of the designer."""
        return designer.get_vdpa_interface_config(
            cls._port(vif_obj), device, host, flavor=flavor,
            image_meta=image_meta,
            rx_queue_size=CONF.libvirt.rx_queue_size,
            tx_queue_size=CONF.libvirt.tx_queue_size,
            max_queues=CONF.libvirt.max_queues)

    def plug(self, instance, vif):
        super().plug(instance, vif)
        vif_obj = self._vdpa_vif(vif)
        if vif_obj is None or not self._checked(self.vf_address(vif_obj)):
            return
        try:
            self._verify_plugged(instance, vif_obj)
        except Exception:  # a warning must never fail the plug
            LOG.exception('Could not verify the plugged representor of '
                          'port %s', vif_obj.id, instance=instance)

    def _check_mechanism_ready(self, vf_address: str) -> None:
        """Before allocation: the host's mechanism can claim a port.

        :raises: OffloadNotReady on an OVN chassis whose ovn-controller
            is not running or not connected to its southbound database.
        """
        reader = self._reader()
        if reader is None:
            return
        for result in checks.check_mechanism_ready(reader, ovn_rundir()):
            if result.status == checks.Status.FAILURE:
                raise exception.OffloadNotReady(vf_address=vf_address,
                                                reason=result.message)

    def _verify_plugged(self, instance: ty.Any, vif_obj: ty.Any) -> None:
        """Warn when br-int's row of the port's representor is not right.

        On an OVN chassis, also say whether ovn-controller installed the
        port's flows already (``ovn-installed``); Neutron sends
        ``network-vif-plugged`` once it has.
        """
        reader = self._reader()
        if reader is None:
            return
        try:
            representor = checks.check_vf_ready(vif_obj.dev_address)
            detected = mechanism.detect(reader)
            result = checks.verify_plugged(
                reader, vif_obj.id, str(vif_obj.address), representor,
                detected.bridge, detected.mechanism)
            programmed = checks.check_programmed(
                reader, vif_obj.id, representor, detected.mechanism)
        except exception.NovaVdpaException as e:
            LOG.warning('Could not verify the plug of port %(port)s: '
                        '%(error)s', {'port': vif_obj.id, 'error': e},
                        instance=instance)
            return
        if not result.ok:
            LOG.warning('%s', result.message, instance=instance)
            return
        LOG.debug('Port %(port)s on %(mech)s: %(state)s',
                  {'port': vif_obj.id, 'mech': detected.mechanism.label,
                   'state': programmed.message}, instance=instance)

    def _reader(self) -> ovsdb.OvsdbReader | None:
        """The driver's OVSDB reader; None (warned once) if unreachable."""
        if self._ovsdb is None:
            try:
                self._ovsdb = ovsdb.OvsdbReader(ovsdb_connection(),
                                                timeout=ovsdb_timeout())
            except exception.OvsdbUnavailable as e:
                if not self._ovsdb_warned:
                    LOG.warning('vdpa ports cannot be verified after plug: '
                                '%s', e)
                    self._ovsdb_warned = True
        return self._ovsdb

    def unplug(self, instance, vif):
        # Nova's cleanup paths swallow an unplug's error (``_unplug_vifs``
        # with ignore_errors): the release must not depend on os-vif.
        try:
            super().unplug(instance, vif)
        finally:
            vif_obj = self._vdpa_vif(vif)
            with self._kept_lock:
                kept = instance.uuid in self._kept
            if vif_obj is not None and kept:
                LOG.debug('vDPA device of port %s kept: the interface is '
                          'detached for a while', vif_obj.id,
                          instance=instance)
            elif vif_obj is not None:
                self.release(instance, vif_obj.id, self.vf_address(vif_obj))

    def release(self, instance: ty.Any, port_id: str,
                vf_address: str | None) -> None:
        """Release the port's device, or defer it; never raises or waits.

        A release runs after the guest let go of the device, in cleanup
        paths that must go on. A device still held is left in place and
        its release retried by the periodic resource update.
        """
        self.releases.release(port_id, vf_address,
                              instance_uuid=instance.uuid)

    def _holder_of(self, chardev: str) -> str | None:
        """The libvirt domains that hold ``chardev``, as text."""
        return ', '.join('libvirt domain %s (instance %s)'
                         % (h.domain, h.uuid)
                         for h in holders.find(self.host, chardev)) or None

# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The Allocator: one vDPA device per vdpa port, read back from the kernel.

This room decides which management device serves a port's VF, names the
port's device, creates, adopts, looks up and releases it. It imports
nothing of Nova, so the same code runs under nova-compute and in the test
bed; privileged work goes through :mod:`nova_vdpa.privsep.vdpa` only.

Decisions, and what the kernel does that they rest on:

* **Names.** A port's device is ``nvdpa-<Neutron port UUID>`` (42
  characters, inside the 63 :mod:`nova_vdpa.kernel.validate` allows). The
  kernel itself is the record of what is allocated: there is no state
  file, and a restarted nova-compute finds its devices by name.
* **Management device.** A VF's devices are made on ``pci/<VF address>``
  (mlx5 registers one management device per VF and takes one device on
  it, answering ENOSPC to a second). The test-only ``simulated_vfs``
  option maps VF addresses to a simulator such as ``vdpasim_net``.
* **Adoption.** A VF that carries a device without our prefix (made by an
  operator for upstream Nova) is used as it is and never modified or
  deleted. For a real VF, "the VF's device" is a vdpa device whose sysfs
  parent is the VF's PCI device (``/sys/bus/pci/devices/<VF>/<device>``),
  found without listing every device; for a simulated VF it is the device
  its ``simulated_vfs`` entry names after ``@``. An adopted device must
  already be bound to vhost_vdpa: nova-vdpa does not rebind it.
* **Idempotence.** Allocating again returns the same device; a device of
  ours with another MAC, MTU, queue-pair count or management device and
  no holder is deleted and made again; with a holder the caller gets
  :class:`~nova_vdpa.exception.VdpaStaleDeviceInUse`. Releasing a device
  that is gone is a success.
* **Queue pairs.** What the caller asks for, capped by the management
  device's ``max_supported_vqs`` ((vqs - 1) // 2 pairs: one queue is the
  control queue). A management device that does not offer F_MQ gets no
  ``max_vqp`` attribute (vdpasim_net answers EOPNOTSUPP to it), and one
  that still refuses it is asked again without it; both are logged.
* **Deadlines.** A deletion that waits for a holder keeps the kernel's
  vdpa lock, and every vdpa netlink request waits behind it in
  uninterruptible sleep. Every kernel read here therefore runs on one
  reader thread with a deadline (a
  :class:`~nova_vdpa.kernel.worker.DeadlineWorker`); while a call of the
  process is stuck, later calls fail at once with
  :class:`~nova_vdpa.exception.VdpaKernelTimeout` instead of queueing
  behind it, and nothing privileged is attempted. What the
  daemon reads itself is not read again here: a creation returns the new
  device as the kernel reports it, and a release leaves the lookup to the
  daemon's deletion job, which has the deletion's deadline and fails at
  once while an earlier deletion is stuck. The reader is an OS thread in
  both of nova-compute's concurrency modes (under eventlet a request
  asleep in the kernel would otherwise stop every green thread). Seen on
  6.12: the kernel unlinks a device from ``/sys/bus/vdpa/devices``
  before the removal waits, so a device whose deletion is stuck already
  looks gone.
* **Opening nodes.** A ``/dev/vhost-vdpa-N`` node admits one opener
  (``vhost_vdpa_open`` sets an atomic ``opened`` flag; a second open gets
  EBUSY until the first closes), and libvirt opens it for QEMU after
  :meth:`Allocator.allocate` returned, outside any lock of ours. An open
  of ours at that moment would make the guest's start fail. So nova-vdpa
  opens a node only (1) in the daemon's creation, right after binding,
  before the device is handed to anyone: the vhost backend (migration
  support) is read then and kept here, and :meth:`Allocator.vhost_backend`
  never opens the node again; (2) to probe for a holder before deleting
  a device: :meth:`Allocator.release` runs once Nova is done with the
  port's guest, under the port lock :meth:`Allocator.allocate` takes, and
  a re-allocation takes a pending release off the retry queue under the
  same lock (:mod:`nova_vdpa.allocator.deferred`), so no guest is being
  started with a device being released. A probe or read of one device
  never disturbs another's node (``opened`` is per device). The number
  of an opened node is checked on its descriptor (``fstat``), not on the
  path.
* **Reconciliation.** The kernel, the instances and their ports are the
  record: at start-up :meth:`Allocator.reconcile` allocates every
  expected port (which repairs what a crash left half done: a device not
  bound yet, an override written but not probed, a stale device) and
  deletes every device of ours that no expected port names and no process
  holds. A kernel deletion is one netlink request: it happened or not.
* **Serialisation.** Allocation is serialised per VF and per port, release
  per port (oslo.concurrency in-process locks, taken VF then port).
* **A killed privsep daemon.** A call the daemon dies in (SIGKILL, the OOM
  killer) fails with :class:`~nova_vdpa.exception.VdpaPrivsepDied` and
  may have done part of its work: a creation can leave its device unbound
  or on virtio_vdpa (with a host netdev). Without waiting for a restart's
  reconcile, the allocation deletes the port's device at once through a
  new daemon and raises; a release is made once more.
"""
import atexit
import dataclasses
import os
from typing import Any, Callable, Iterable, Mapping, Sequence

from oslo_concurrency import lockutils
from oslo_config import cfg
from oslo_log import log as logging

from nova_vdpa.allocator.ports import Allocation
from nova_vdpa.allocator.ports import device_name
from nova_vdpa.allocator.ports import DEVICE_PREFIX
from nova_vdpa.allocator.ports import is_ours
from nova_vdpa.allocator.ports import parse_simulated_vfs
from nova_vdpa.allocator.ports import PortRequest
from nova_vdpa.allocator.ports import ReconcileResult
from nova_vdpa import conf as vdpa_conf
from nova_vdpa import exception
from nova_vdpa.kernel import model
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs as sysfs_mod
from nova_vdpa.kernel import validate
from nova_vdpa.kernel import vhost
from nova_vdpa.kernel import worker
import nova_vdpa.privsep.vdpa

LOG = logging.getLogger(__name__)

#: seconds a kernel read may take before the caller gets an error
#: (``[nova_vdpa] read_timeout``)
DEFAULT_READ_TIMEOUT = vdpa_conf.DEFAULT_READ_TIMEOUT

ClientFactory = Callable[[], netlink.VdpaClient]


@dataclasses.dataclass(frozen=True)
class _SimulatedVf:
    mgmtdev: str
    #: the operator's device adopted for this VF, if any
    device: str | None


class Allocator:
    """Creates, adopts, looks up and releases the devices of vdpa ports.

    :param management_devices: handles that may be used; empty allows
        none (``[nova_vdpa] management_devices``; fail closed). The
        privsep daemon enforces its own copy of the option.
    :param simulated_vfs: TEST ONLY (``[nova_vdpa] simulated_vfs``): VF
        address -> ``<mgmtdev>`` or ``<mgmtdev>@<operator's device>``.
    :param delete_timeout: seconds a deletion may wait for the kernel.
    :param read_timeout: seconds a kernel read may take.
    :param client_factory: builds the reader thread's netlink client.
    :param sysfs: sysfs access (tests pass a fake kernel's).
    :raises: VdpaInvalidArgument for a malformed option value.
    """

    def __init__(self, management_devices: Sequence[str] = (),
                 simulated_vfs: Mapping[str, str] | None = None,
                 delete_timeout: float = vdpa_conf.DEFAULT_DELETE_TIMEOUT,
                 read_timeout: float = DEFAULT_READ_TIMEOUT,
                 client_factory: ClientFactory = netlink.VdpaClient,
                 sysfs: sysfs_mod.VdpaSysfs | None = None) -> None:
        for handle in management_devices:
            validate.mgmtdev_handle(handle)
        validate.timeout(delete_timeout)
        if isinstance(read_timeout, bool) or \
                not isinstance(read_timeout, (int, float)) or \
                read_timeout <= 0:
            raise exception.VdpaInvalidArgument(
                device='-', mgmtdev='-', attribute='read_timeout',
                reason='%r is not a positive number of seconds'
                % (read_timeout,))
        self._allowed = frozenset(management_devices)
        self._simulated: dict[str, _SimulatedVf] = {}
        for vf, target in (simulated_vfs or {}).items():
            if not validate.is_pci_address(vf):
                raise exception.VdpaInvalidArgument(
                    device='-', mgmtdev=target, attribute='simulated_vfs',
                    reason='%r is not a PCI address' % vf)
            mgmtdev, _, device = target.partition('@')
            validate.mgmtdev_handle(mgmtdev)
            if model.split_mgmtdev(mgmtdev)[0] is not None:
                # A simulator's management device has no bus (vdpasim_net,
                # vduse); one with a bus is hardware, whose VFs are served
                # by their own pci/<VF> and must not be re-mapped.
                raise exception.VdpaInvalidArgument(
                    device='-', mgmtdev=mgmtdev, attribute='simulated_vfs',
                    reason='%s=%s: simulated_vfs is for tests only and may '
                    'map a VF only to a simulator, a management device '
                    'without a bus such as vdpasim_net' % (vf, target))
            if device:
                validate.device_name(device)
            self._simulated[vf] = _SimulatedVf(mgmtdev, device or None)
        if self._simulated:
            LOG.warning('simulated_vfs is set: VFs %s are served by %s. '
                        'This option exists for tests only.',
                        ', '.join(sorted(self._simulated)),
                        ', '.join(sorted({s.mgmtdev for s in
                                          self._simulated.values()})))
        self._delete_timeout = delete_timeout
        #: vhost backends read at creation, by device name (port-locked)
        self._backends: dict[str, vhost.Backend] = {}
        self._sysfs = sysfs or sysfs_mod.VdpaSysfs()
        self._read_timeout = read_timeout
        self._reader = worker.DeadlineWorker(client_factory, 'vdpa-reader')
        atexit.register(self.close)

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts, **kwargs: Any) -> 'Allocator':
        """An allocator configured by nova-vdpa's option group of ``conf``.

        :param kwargs: further :class:`Allocator` arguments.
        """
        vdpa_conf.register_opts(conf)
        group = getattr(conf, vdpa_conf.vdpa_group.name)
        kwargs.setdefault('delete_timeout', group.delete_timeout)
        kwargs.setdefault('read_timeout', group.read_timeout)
        return cls(management_devices=group.management_devices,
                   simulated_vfs=parse_simulated_vfs(group.simulated_vfs),
                   **kwargs)

    def close(self) -> None:
        """Stop the reader thread and close its netlink socket."""
        atexit.unregister(self.close)
        self._reader.stop()

    # ------------------------------------------------------------ checks
    @staticmethod
    def _check_vf(port_id: str, vf_address: str) -> None:
        if not validate.is_pci_address(vf_address):
            raise exception.VdpaPortRequestInvalid(
                port_id=port_id, vf_address=repr(vf_address),
                reason='a VF address is a PCI address such as '
                '0000:08:00.2 (lowercase)')

    def _check_request(self, request: PortRequest) -> str:
        name = device_name(request.port_id)
        self._check_vf(request.port_id, request.vf_address)
        checks: list[tuple[Callable[[Any, str], None], Any]] = [
            (validate.mac, request.mac)]
        if request.mtu is not None:
            checks.append((validate.mtu, request.mtu))
        if request.queue_pairs is not None:
            checks.append((validate.max_vq_pairs, request.queue_pairs))
        for check, value in checks:
            try:
                check(value, name)
            except exception.VdpaInvalidArgument as e:
                raise exception.VdpaPortRequestInvalid(
                    port_id=request.port_id, vf_address=request.vf_address,
                    reason=e.kwargs.get('reason', str(e)))
        return name

    def _check_allowed(self, port_id: str, vf_address: str,
                       mgmtdev: str) -> None:
        if mgmtdev not in self._allowed:
            raise exception.VdpaManagementDeviceNotAllowed(
                port_id=port_id, vf_address=vf_address, mgmtdev=mgmtdev,
                reason=vdpa_conf.not_allowed_reason(self._allowed))

    def _mgmtdev_of(self, port_id: str, vf_address: str) -> str:
        self._check_vf(port_id, vf_address)
        sim = self._simulated.get(vf_address)
        mgmtdev = sim.mgmtdev if sim else 'pci/' + vf_address
        self._check_allowed(port_id, vf_address, mgmtdev)
        return mgmtdev

    def management_device(self, vf_address: str) -> str:
        """The management device that serves ``vf_address``.

        :returns: ``pci/<VF address>``, or the ``simulated_vfs`` mapping.
        :raises: VdpaManagementDeviceNotAllowed when ``management_devices``
            leaves it out; VdpaPortRequestInvalid for a bad address.
        """
        return self._mgmtdev_of('-', vf_address)

    def uses_virtual_addresses(self, mgmtdev: str) -> bool:
        """Whether ``mgmtdev``'s devices map guest memory by virtual address.

        Such a device reaches only shared, file-backed guest memory
        (:meth:`~nova_vdpa.kernel.sysfs.VdpaSysfs.uses_virtual_addresses`).

        :raises: VdpaSysfsError when the kernel cannot tell.
        """
        return self._sysfs.uses_virtual_addresses(mgmtdev)

    # ------------------------------------------------------------- reads
    def _read(self, fn: Callable[[netlink.VdpaClient], Any], device: str,
              mgmtdev: str, what: str) -> Any:
        return self._reader.call(fn, timeout=self._read_timeout,
                                 device=device, mgmtdev=mgmtdev, what=what)

    def _read_device(self, name: str) -> tuple[model.VdpaDevice,
                                               model.DeviceConfig] | None:
        """``(device, config)`` of ``name``, None if it does not exist."""
        if not self._sysfs.exists(name):
            return None
        try:
            return self._read(lambda c: (c.get_device(name),
                                         c.get_config(name)),
                              name, '-', 'device get')
        except exception.VdpaDeviceNotFound:
            return None  # deleted since sysfs showed it

    def _adoptable(self, vf_address: str) -> str | None:
        """The name of the operator's device on ``vf_address``, if any."""
        sim = self._simulated.get(vf_address)
        if sim is not None:
            found = [sim.device] if sim.device and \
                self._sysfs.exists(sim.device) else []
        else:
            # The VF's own directory: its children, not the whole bus.
            vf_dir = os.path.join(self._sysfs.sys_root, 'bus', 'pci',
                                  'devices', vf_address)
            try:
                entries = os.listdir(vf_dir)
            except OSError:
                entries = []
            real = os.path.realpath(vf_dir)
            found = [e for e in entries if os.path.realpath(os.path.join(
                self._sysfs.bus, 'devices', e)) == os.path.join(real, e)]
        found = [n for n in found if not is_ours(n)]
        return sorted(found)[0] if found else None

    def _allocation(self, port_id: str, vf_address: str, name: str,
                    owned: bool, chardev: str | None = None
                    ) -> Allocation | None:
        current = self._read_device(name)
        if current is None:
            return None
        device, config = current
        if not owned:
            driver = self._sysfs.driver(name)
            if driver != sysfs_mod.VHOST_VDPA:
                raise exception.VdpaAdoptedDeviceNotBound(
                    port_id=port_id, vf_address=vf_address, device=name,
                    driver=driver or 'no driver')
        return Allocation(chardev=chardev or self._sysfs.chardev(name),
                          owned=owned, device=device, config=config)

    def lookup(self, port_id: str, vf_address: str) -> Allocation | None:
        """The port's device now, ours or adopted; None if it has none.

        Read-only; costs the same whatever the number of devices: our
        device is found by its name, an adopted one among the VF's sysfs
        children. A device of ours that is not bound to vhost_vdpa (a
        crash between creation and binding) raises VdpaChardevNotFound:
        :meth:`allocate` repairs it.

        :raises: VdpaPortRequestInvalid, VdpaKernelTimeout,
            VdpaAdoptedDeviceNotBound, VdpaChardevNotFound
        """
        name = device_name(port_id)
        self._check_vf(port_id, vf_address)
        found = self._allocation(port_id, vf_address, name, owned=True)
        if found is None:
            adopted = self._adoptable(vf_address)
            if adopted is not None:
                found = self._allocation(port_id, vf_address, adopted,
                                         owned=False)
        return found

    def vhost_backend(self, allocation: Allocation) -> vhost.Backend:
        """The vhost backend of the port's device (its migration support).

        As the daemon read it when it created the device; the node is
        never opened later (see "Opening nodes" above).

        :raises: VdpaBackendNotRead for a device this allocator did not
            create (an adopted device, one made before a restart) or whose
            node did not answer then.
        """
        with lockutils.lock('nova-vdpa-port-' + allocation.name):
            backend = self._backends.get(allocation.name)
        if backend is None:
            raise exception.VdpaBackendNotRead(
                device=allocation.name, mgmtdev=allocation.mgmtdev,
                reason='nova-vdpa reads it only while it creates a device, '
                'before a guest may open the device node, and %s'
                % ('this device is an operator\'s' if not allocation.owned
                   else 'this device was not created by this process, or '
                   'its node did not answer then'))
        return backend

    def vf_management_devices(self) -> dict[str, model.ManagementDevice]:
        """Every VF that can get a network vDPA device now (inventory).

        One management device dump: ``pci/<address>`` handles that support
        the net class and are listed in ``management_devices`` (an empty
        list types no VF: an operator opts each VF in), keyed by address
        (a PF that is a management device is listed too; Nova's ``[pci]
        device_spec`` decides what is offered), plus simulated VFs whose
        management device exists.

        :returns: VF address -> its management device.
        :raises: VdpaKernelTimeout, VdpaNotLoaded
        """
        mgmtdevs = {m.handle: m for m in self._read(
            lambda c: c.list_management_devices(), '-', '*',
            'management device dump')
            if model.VIRTIO_ID_NET in m.supported_class_ids
            and m.handle in self._allowed}
        out = {m.name: m for m in mgmtdevs.values() if m.bus == 'pci'}
        for vf, sim in self._simulated.items():
            if sim.mgmtdev in mgmtdevs:
                out[vf] = mgmtdevs[sim.mgmtdev]
        return out

    def owned_devices(self) -> list[model.VdpaDevice]:
        """Every device with our prefix (one dump), for reconciliation.

        :raises: VdpaKernelTimeout
        """
        return [d for d in self._read(lambda c: c.list_devices(), '*', '-',
                                      'device dump')
                if is_ours(d.name)]

    # ------------------------------------------------------------ writes
    def _queue_pairs(self, mgmt: model.ManagementDevice,
                     wanted: int | None, name: str) -> int | None:
        """What to ask the kernel for: capped, or None (no attribute)."""
        if wanted is None:
            return None
        if mgmt.supported_features is not None and \
                not mgmt.supported_features & model.F_MQ:
            LOG.info('Management device %s offers no multiqueue (F_MQ): '
                     '%s gets its default queue pairs, not %d.',
                     mgmt.handle, name, wanted)
            return None
        if mgmt.max_supported_vqs:
            # One of the queues is the control queue.
            cap = max(1, (mgmt.max_supported_vqs - 1) // 2)
            if wanted > cap:
                LOG.info('Management device %s supports %d queue pairs: '
                         '%s gets %d, not %d.', mgmt.handle, cap, name,
                         cap, wanted)
                return cap
        return wanted

    @staticmethod
    def _stale(device: model.VdpaDevice, config: model.DeviceConfig,
               mgmtdev: str, mac: str, mtu: int | None,
               queue_pairs: int | None) -> list[tuple[str, Any, Any]]:
        """(what, found, wanted) for each way the device differs."""
        out: list[tuple[str, Any, Any]] = []
        if device.mgmtdev != mgmtdev:
            out.append(('management device', device.mgmtdev, mgmtdev))
        if (config.mac or '').lower() != mac:
            out.append(('MAC', config.mac, mac))
        if mtu is not None and config.mtu != mtu:
            out.append(('MTU', config.mtu, mtu))
        if queue_pairs is not None and config.max_vq_pairs is not None \
                and config.max_vq_pairs != queue_pairs:
            out.append(('queue pairs', config.max_vq_pairs, queue_pairs))
        return out

    def _create(self, name: str, mgmtdev: str, request: PortRequest,
                queue_pairs: int | None) -> Allocation:
        """Create and bind the port's device; read back in the same call.

        :raises: VdpaPrivsepDied after deleting what the dead daemon left.
        """
        mac = request.mac.lower()
        try:
            try:
                made = nova_vdpa.privsep.vdpa.create_bound_device(
                    name, mgmtdev, mac=mac, mtu=request.mtu,
                    max_vq_pairs=queue_pairs)
            except exception.VdpaAttributeNotSupported:
                if queue_pairs is None:
                    raise
                LOG.info('Management device %s refused max_vqp for %s; '
                         'creating it with its default queue pairs.',
                         mgmtdev, name)
                made = nova_vdpa.privsep.vdpa.create_bound_device(
                    name, mgmtdev, mac=mac, mtu=request.mtu)
        except exception.VdpaPrivsepDied:
            self._delete_half_made(name)
            raise
        if made.backend is not None:
            self._backends[name] = made.backend
        return Allocation(chardev=made.chardev, owned=True,
                          device=made.device, config=made.config)

    def _delete_half_made(self, name: str) -> None:
        """Delete what a call the privsep daemon died in left of ``name``.

        Its kernel work may have happened in part: a device created and
        not bound yet (unbound, or probed by virtio_vdpa, which gives the
        host a netdev), or made whole. Nobody was told its node, so nobody
        holds it: it is deleted at once, through a new daemon, and the
        caller gets the daemon's death. Should this fail too, the port's
        next allocation, its release or the start-up reconcile finds it.
        """
        try:
            nova_vdpa.privsep.vdpa.delete_device(name, self._delete_timeout)
        except exception.VdpaDeviceNotFound:
            return
        except exception.NovaVdpaException as e:
            LOG.error('vDPA device %s may be half made (the privsep daemon '
                      'died while making it) and could not be deleted: %s',
                      name, e)
            return
        LOG.warning('vDPA device %s was deleted: the privsep daemon died '
                    'while making it.', name)

    def allocate(self, request: PortRequest) -> Allocation:
        """Make sure the port has its device, bound to vhost_vdpa.

        Idempotent, serialised per VF and per port. The port's own device
        comes first; otherwise the VF's operator device, if any, is
        adopted; otherwise ours is created. A device of ours that differs
        from the request and has no holder is made again.

        :raises: VdpaPortRequestInvalid, VdpaManagementDeviceNotAllowed,
            VdpaAdoptedDeviceNotBound, VdpaStaleDeviceInUse,
            VdpaKernelTimeout, VdpaPrivsepDied (nothing left of the
            device), and the kernel's typed errors
            (VdpaNoSpace: the VF already has a device;
            VdpaManagementDeviceNotFound: no vDPA on that VF).
        """
        name = self._check_request(request)
        port_id, vf = request.port_id, request.vf_address
        mgmtdev = self._mgmtdev_of(port_id, vf)
        mac = request.mac.lower()
        with lockutils.lock('nova-vdpa-vf-' + vf), \
                lockutils.lock('nova-vdpa-port-' + name):
            current = self._read_device(name)
            if current is None:
                adopted = self._adoptable(vf)
                if adopted is not None:
                    found = self._allocation(port_id, vf, adopted,
                                             owned=False)
                    if found is not None:
                        LOG.info('Port %s uses vDPA device %s on VF %s, '
                                 'made by an operator, as it is.',
                                 port_id,
                                 exception.escape_control(adopted), vf)
                        return found
            # Also the read that fails fast while the kernel is stuck,
            # before anything privileged is attempted.
            mgmt = self._read(lambda c: c.get_management_device(mgmtdev),
                              name, mgmtdev, 'management device get')
            queue_pairs = self._queue_pairs(mgmt, request.queue_pairs, name)
            if current is not None:
                stale = self._stale(current[0], current[1], mgmtdev, mac,
                                    request.mtu, queue_pairs)
                if not stale:
                    return self._bound(port_id, vf, name, *current)
                self._recreate_stale(port_id, vf, name, stale)
            if (request.mtu is not None
                    and mgmt.supported_features is not None
                    and not mgmt.supported_features & model.F_MTU):
                # The kernel takes the MTU attribute all the same (it
                # checks F_MTU only among provisioned features).
                LOG.warning('Management device %s offers no MTU feature '
                            '(F_MTU): the guest of port %s is not told its '
                            'MTU %d by device %s; it must learn it another '
                            'way (DHCP, config drive).', mgmt.handle,
                            port_id, request.mtu, name)
            return self._create(name, mgmtdev, request, queue_pairs)

    def _recreate_stale(self, port_id: str, vf: str, name: str,
                        stale: list[tuple[str, Any, Any]]) -> None:
        found = ', '.join('%s %s' % (w, f) for w, f, _ in stale)
        wanted = ', '.join('%s %s' % (w, v) for w, _, v in stale)
        self._backends.pop(name, None)
        try:
            nova_vdpa.privsep.vdpa.delete_device(name, self._delete_timeout)
        except exception.VdpaDeviceInUse:
            raise exception.VdpaStaleDeviceInUse(
                port_id=port_id, vf_address=vf, device=name, found=found,
                wanted=wanted)
        except exception.VdpaDeviceNotFound:
            pass
        LOG.info('vDPA device %s of port %s had %s instead of %s: made '
                 'again.', name, port_id, exception.escape_control(found),
                 wanted)

    def _bound(self, port_id: str, vf: str, name: str,
               device: model.VdpaDevice,
               config: model.DeviceConfig) -> Allocation:
        """The Allocation of a device of ours found right, bound if not.

        Already on vhost_vdpa, what was just read stands; a device bound
        now (a crash before its binding) is read again: the driver switch
        resets its status and negotiated features.
        """
        if self._sysfs.driver(name) == sysfs_mod.VHOST_VDPA:
            return Allocation(chardev=self._sysfs.chardev(name), owned=True,
                              device=device, config=config)
        try:
            chardev = nova_vdpa.privsep.vdpa.bind_device(name)
        except exception.VdpaPrivsepDied:
            self._delete_half_made(name)
            raise
        found = self._allocation(port_id, vf, name, owned=True,
                                 chardev=chardev)
        if found is None:
            raise exception.VdpaDeviceNotFound(
                device=name, mgmtdev='-', attribute='sysfs',
                reason='deleted while being allocated')
        return found

    def release(self, port_id: str, vf_address: str | None = None) -> None:
        """Delete the port's device if it is ours; idempotent.

        An adopted (operator's) device is never touched: only the port's
        own ``nvdpa-<port>`` name is ever deleted. A missing device is a
        success. Serialised with :meth:`allocate` per port.

        :param vf_address: for messages only; the device is found by name.
        A call the privsep daemon died in is made once more, through a
        new daemon.

        :raises: VdpaDeviceInUse (a process holds it; nothing waits),
            VdpaDeleteTimeout, VdpaKernelTimeout, VdpaDeviceNotOurs
        """
        name = device_name(port_id)
        with lockutils.lock('nova-vdpa-port-' + name):
            # A device released is no more a guest's: whatever is made
            # again under the name reads its own backend.
            self._backends.pop(name, None)
            if not self._sysfs.exists(name):
                return
            # No read of our own: the daemon looks the device up, checks
            # its management device against management_devices and for a
            # holder, and deletes it, in one job under the deletion's
            # deadline. A read known to be stuck still fails this at once.
            worker.check_not_stuck(name, '-', 'delete')
            for attempt in (1, 2):
                try:
                    nova_vdpa.privsep.vdpa.delete_device(
                        name, self._delete_timeout,
                        management_devices=sorted(self._allowed))
                except exception.VdpaDeviceNotFound:
                    return
                except exception.VdpaPrivsepDied as e:
                    # One netlink request: it happened or not. Once more,
                    # through a new daemon.
                    if attempt == 2:
                        raise
                    LOG.warning('Releasing vDPA device %s again: %s', name,
                                e)
                    continue
                break
            LOG.debug('Released vDPA device %s of port %s (VF %s).', name,
                      port_id, vf_address or '-')

    # ------------------------------------------------------- reconciling
    def _state(self, name: str) -> tuple[Any, ...] | None:
        """Device, config and driver of ``name`` now; None if it is gone.

        Compared before and after :meth:`allocate` to tell a device kept
        from one made or repaired.
        """
        try:
            current = self._read_device(name)
            return None if current is None else (
                current[0], current[1], self._sysfs.driver(name))
        except exception.VdpaDeviceNotFound:
            return None

    def reconcile(self, expected: Iterable[PortRequest]) -> ReconcileResult:
        """Make the kernel match the ports that should have devices here.

        For start-up (``init_host``) and after a crash: every expected
        request goes through :meth:`allocate` (a missing device is made,
        a stale or unbound one repaired, an operator's adopted); every
        device of ours (:meth:`owned_devices`) whose port is not expected
        is deleted unless a process holds it (then it is left, and
        nothing waits). Devices without our prefix are never touched. One
        failure, of any kind, never stops the rest (an unexpected one is
        logged with its traceback). Run it before anything else
        allocates (``init_host``): a device being made meanwhile for a
        port outside ``expected`` would count as an orphan.

        :param expected: the requests of the ports that should have a
            device on this host.
        :returns: what was done, device by device.
        :raises: VdpaKernelTimeout only when the device dump itself fails
            (the expected ports were handled before).
        """
        result = ReconcileResult()
        wanted = set()
        for request in expected:
            try:
                name = device_name(request.port_id)
            except exception.VdpaPortRequestInvalid as e:
                result.failed[str(request.port_id)] = str(e)
                continue
            wanted.add(name)
            try:
                before = self._state(name)
                found = self.allocate(request)
            except exception.NovaVdpaException as e:
                result.failed[request.port_id] = str(e)
                continue
            except Exception as e:  # a bug: logged, the others go on
                LOG.exception('Reconciling the vDPA device of port %s',
                              request.port_id)
                result.failed[request.port_id] = '%s: %s' % (
                    type(e).__name__, e)
                continue
            if not found.owned or before == (found.device, found.config,
                                             sysfs_mod.VHOST_VDPA):
                result.kept.append(found.name)
            else:
                result.created.append(found.name)
        for device in self.owned_devices():
            if device.name in wanted:
                continue
            port_id = device.name[len(DEVICE_PREFIX):]
            try:
                self.release(port_id)
            except exception.VdpaDeviceInUse as e:
                result.held.append(device.name)
                LOG.warning('vDPA device %s belongs to no port expected on '
                            'this host but is held, left in place: %s',
                            device.name, e)
                continue
            except exception.NovaVdpaException as e:
                result.failed[device.name] = str(e)
                continue
            except Exception as e:  # a bug: logged, the others go on
                LOG.exception('Reconciling vDPA device %s', device.name)
                result.failed[device.name] = '%s: %s' % (type(e).__name__,
                                                         e)
                continue
            result.deleted.append(device.name)
        for key, error in sorted(result.failed.items()):
            LOG.warning('Reconciling vDPA devices: %s failed: %s',
                        exception.escape_control(key), error)
        LOG.info('Reconciled vDPA devices: %d created, %d kept, %d deleted, '
                 '%d held, %d failed.', len(result.created),
                 len(result.kept), len(result.deleted), len(result.held),
                 len(result.failed))
        return result

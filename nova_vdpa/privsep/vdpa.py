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

"""The privileged vDPA primitives: create (and bind), bind, delete.

Each public function checks its arguments here, unprivileged, then calls
the matching ``_``-prefixed entrypoint, which runs in the privsep daemon
and does nothing but the kernel operation (nova_vdpa.kernel re-checks).
Call them by full path, ``nova_vdpa.privsep.vdpa.create_bound_device(...)``,
so escalation is visible where it happens.

Only what a caller uses is an entrypoint: a creation is always bound and
read back in the same call, so no entrypoint takes a raw feature mask or
leaves a device on whatever driver the kernel's autoprobe picks.

The daemon's own refusals (it trusts nothing the caller says about
policy): a name that is not ``nvdpa-<UUID>``; a management device that
its own ``[nova_vdpa] management_devices`` leaves out (an empty list
allows none); a creation on a management device that already carries
its limit of our devices (one on a VF's or SF's, ``max_devices_per_simulator``
on a simulator's).

No call can hang the daemon or its caller:

* in the daemon, every kernel call that can wait behind the kernel's vdpa
  lock (creation, binding, the lookups, the backend read) runs on one
  :class:`~nova_vdpa.kernel.worker.DeadlineWorker` under
  :data:`DAEMON_TIMEOUT`, deletions on the kernel layer's own worker
  under their deadline; while one of them is stuck in the kernel, the
  others fail at once with VdpaKernelTimeout (one state per daemon);
* on the caller's side, at most :data:`MAX_IN_FLIGHT` privileged calls of
  a process are in flight; one more fails at once with
  VdpaPrivilegedCallsBusy. oslo.privsep's daemon queues calls for its
  thread pool without a bound, before any code of ours runs, so the bound
  is kept where the calls start.
"""

import contextlib
import dataclasses
import threading
from typing import Any, Callable, Iterator, NamedTuple, Sequence
import uuid

from oslo_config import cfg
from oslo_log import log as logging
from oslo_privsep import comm

from nova_vdpa import conf as vdpa_conf
from nova_vdpa import exception
from nova_vdpa.kernel import lifecycle
from nova_vdpa.kernel import model
from nova_vdpa.kernel import native
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs
from nova_vdpa.kernel import validate
from nova_vdpa.kernel import vhost
from nova_vdpa.kernel import worker
# Not "import nova_vdpa.privsep": the package imports this module while
# it is itself being imported (see its end).
from nova_vdpa import privsep
from nova_vdpa.privsep import channel

LOG = logging.getLogger(__name__)

#: prefix of every device nova-vdpa creates; the Neutron port UUID follows
DEVICE_PREFIX = 'nvdpa-'

#: seconds a create or bind may take in the daemon before the caller
#: gets VdpaKernelTimeout (the daemon's thread may stay stuck longer)
CALL_TIMEOUT = 30.0
#: the same for a deletion, which has its own deadline inside the daemon
DELETE_CALL_TIMEOUT = validate.MAX_TIMEOUT + CALL_TIMEOUT
#: seconds the daemon waits for the kernel in a create, bind or read before
#: it answers VdpaKernelTimeout itself (inside CALL_TIMEOUT, so that the
#: caller gets the daemon's typed answer, and the daemon's thread is free)
DAEMON_TIMEOUT = 20.0
#: privileged calls one process may have in flight; nova-compute builds
#: up to 10 instances at once by default (max_concurrent_builds)
MAX_IN_FLIGHT = 32


def device_name(port_id: str) -> str:
    """``nvdpa-<port UUID>``: the only names nova-vdpa creates.

    :raises: VdpaPortRequestInvalid unless ``port_id`` is a UUID.
    """
    try:
        return DEVICE_PREFIX + str(uuid.UUID(port_id))
    except (TypeError, ValueError, AttributeError):
        raise exception.VdpaPortRequestInvalid(
            port_id=repr(port_id), vf_address='-',
            reason='a port id is a UUID')


def is_ours(name: str) -> bool:
    """Whether ``name`` is ``nvdpa-`` and a canonical lowercase UUID."""
    if not isinstance(name, str) or not name.startswith(DEVICE_PREFIX):
        return False
    rest = name[len(DEVICE_PREFIX):]
    try:
        return str(uuid.UUID(rest)) == rest
    except ValueError:
        return False


# Seams for the unit tests' fake kernel; the daemon uses the real ones.
_client_factory = netlink.VdpaClient
_sysfs_factory = sysfs.VdpaSysfs
#: the configuration both sides read (the daemon's comes from the files
#: nova-compute passes to privsep-helper)
_conf = cfg.CONF
_in_flight = threading.BoundedSemaphore(MAX_IN_FLIGHT)


@contextlib.contextmanager
def _admitted(name: str, mgmtdev: str, action: str) -> Iterator[None]:
    """Count a privileged call in flight; refuse one over the bound.

    :raises: VdpaPrivilegedCallsBusy
    """
    if not _in_flight.acquire(blocking=False):
        raise exception.VdpaPrivilegedCallsBusy(
            device=name, mgmtdev=mgmtdev, attribute=action,
            limit=MAX_IN_FLIGHT)
    try:
        yield
    finally:
        _in_flight.release()


def _in_kernel(fn: Callable[[netlink.VdpaClient], Any], name: str,
               mgmtdev: str, action: str) -> Any:
    """``fn(client)`` on the daemon's kernel worker, under DAEMON_TIMEOUT.

    :raises: VdpaKernelTimeout, at once while a call is stuck; what
        ``fn`` raises.
    """
    return worker.shared(_client_factory, 'privsep').call(
        fn, timeout=DAEMON_TIMEOUT, device=name, mgmtdev=mgmtdev,
        what=action)


def _group() -> cfg.ConfigOpts.GroupAttr:
    # Registered here too: the daemon never runs the driver's
    # registration. Only once: this runs for every call.
    try:
        return getattr(_conf, vdpa_conf.vdpa_group.name)
    except cfg.NoSuchOptError:
        vdpa_conf.register_opts(_conf)
        return getattr(_conf, vdpa_conf.vdpa_group.name)


def check_ours(name: str, mgmtdev: str | None, action: str,
               narrowed_to: Sequence[str] | None = None) -> None:
    """Refuse a device nova-vdpa may not touch (run on both sides).

    Ours means: a name :func:`is_ours` accepts, on a management device
    that ``management_devices`` lists (an empty list allows none).

    :param mgmtdev: the device's management device; None checks the name
        only (the caller does not know it, the daemon asks the kernel).
    :param action: what was refused, for the message.
    :param narrowed_to: a caller's own ``management_devices``, which must
        allow it too (None: no narrowing; empty: allows none).
    :raises: VdpaDeviceNotOurs
    """
    if not is_ours(name):
        raise exception.VdpaDeviceNotOurs(
            device=name, mgmtdev=mgmtdev or '-', attribute=action,
            reason='nova-vdpa only touches devices named %s<port UUID>'
            % DEVICE_PREFIX)
    if mgmtdev is None:
        return
    for allowed in (_group().management_devices, narrowed_to):
        if allowed is not None and mgmtdev not in allowed:
            raise exception.VdpaDeviceNotOurs(
                device=name, mgmtdev=mgmtdev, attribute=action,
                reason='the management device may not be used: '
                + vdpa_conf.not_allowed_reason(allowed))


def check_ours_in_daemon(name: str, action: str,
                         client: netlink.VdpaClient) -> None:
    """:func:`check_ours` with the management device the kernel reports.

    For the daemon's side of a call whose caller knew only the name; run
    on the daemon's kernel worker (``client`` is the worker's).

    :raises: VdpaDeviceNotOurs, and what a DEV_GET raises.
    """
    check_ours(name, None, action)
    check_ours(name, client.get_device(name).mgmtdev, action)


# Taken on the kernel worker's OS thread: native locks.
_room_locks: dict[str, Any] = {}
_room_locks_guard = native.threading.Lock()


def _room_lock(mgmtdev: str) -> Any:
    with _room_locks_guard:
        return _room_locks.setdefault(mgmtdev, native.threading.Lock())


def check_room(client: netlink.VdpaClient, name: str, mgmtdev: str) -> None:
    """Refuse a creation that would pass the management device's limit.

    Counts the devices of ours already on ``mgmtdev`` (one device dump)
    against :func:`nova_vdpa.conf.device_limit`: one on a management
    device with a bus, ``max_devices_per_simulator`` on one without.
    ``name`` itself is not counted: creating it again is the kernel's
    EEXIST, a clearer error.

    :raises: VdpaNoSpace, and what a device dump raises.
    """
    limit = vdpa_conf.device_limit(mgmtdev,
                                   _group().max_devices_per_simulator)
    ours = sorted(d.name for d in client.list_devices()
                  if d.mgmtdev == mgmtdev and d.name != name
                  and is_ours(d.name))
    if len(ours) < limit:
        return
    if model.split_mgmtdev(mgmtdev)[0]:
        rule = 'one per VF or SF'
    else:
        rule = ('[%s] max_devices_per_simulator'
                % vdpa_conf.vdpa_group.name)
    shown = ', '.join(ours[:3]) + (', ...' if len(ours) > 3 else '')
    raise exception.VdpaNoSpace(
        device=name, mgmtdev=mgmtdev, attribute='create',
        reason='it already carries %d device(s) of nova-vdpa (%s), the '
        'most allowed on it (%s)' % (len(ours), shown, rule))


def _timeout_error(name: str, mgmtdev: str, action: str,
                   timeout: float) -> exception.VdpaKernelTimeout:
    return exception.VdpaKernelTimeout(device=name, mgmtdev=mgmtdev,
                                       attribute=action, timeout=timeout)


class BoundDevice(NamedTuple):
    """A device just created and bound, as the kernel reports it after.

    ``backend`` is its vhost backend, read through its node before anyone
    else knew the device; None when the node did not answer.
    """

    chardev: str
    device: model.VdpaDevice
    config: model.DeviceConfig
    backend: vhost.Backend | None


def create_bound_device(name: str, mgmtdev: str, mac: str | None = None,
                        mtu: int | None = None,
                        max_vq_pairs: int | None = None) -> BoundDevice:
    """Create a device of ours, bind it to vhost_vdpa and read it back.

    One daemon round trip for what allocating a port needs: a device that
    cannot be bound is deleted again
    (:func:`nova_vdpa.kernel.lifecycle.create_device`), and the kernel's
    view of the new device (DEV_GET, CONFIG_GET) comes back with its
    chardev, read by the daemon right after binding. So does its vhost
    backend (migration support): its node admits one opener, and this is
    the one moment nova-vdpa may open it without racing a guest's start,
    before the device was handed to anyone.

    :raises: VdpaInvalidArgument and VdpaDeviceNotOurs before escalation
        (and again in the daemon); VdpaNoSpace when the management device
        already carries its limit of our devices (:func:`check_room`);
        VdpaKernelTimeout after :data:`CALL_TIMEOUT` (the daemon may still
        finish the creation); the typed kernel errors of
        :meth:`nova_vdpa.kernel.netlink.VdpaClient.create_device` and
        what :func:`bind_device` raises.
    """
    validate.create_args(name, mgmtdev, mac, mtu, max_vq_pairs, None)
    check_ours(name, mgmtdev, 'create')
    try:
        with _admitted(name, mgmtdev, 'create'):
            chardev, device, config, backend = channel.call(
                privsep.vdpa_pctxt, _create_bound_device, name, mgmtdev,
                mac, mtu, max_vq_pairs, action='create', device=name,
                mgmtdev=mgmtdev)
    except comm.PrivsepTimeout:
        raise _timeout_error(name, mgmtdev, 'create', CALL_TIMEOUT)
    return BoundDevice(chardev, model.VdpaDevice(**device),
                       model.DeviceConfig(**config),
                       None if backend is None else vhost.Backend(*backend))


@privsep.vdpa_pctxt.entrypoint_with_timeout(CALL_TIMEOUT)
def _create_bound_device(name: str, mgmtdev: str, mac: str | None,
                         mtu: int | None, max_vq_pairs: int | None
                         ) -> tuple[str, dict, dict, tuple | None]:
    check_ours(name, mgmtdev, 'create')
    # The rollback of a creation that cannot be bound is a deletion on
    # the kernel layer's delete worker, within this call's deadline.
    rollback = min(float(_group().delete_timeout), DAEMON_TIMEOUT / 2)

    def job(client: netlink.VdpaClient
            ) -> tuple[str, dict, dict, tuple | None]:
        s = _sysfs_factory()
        # The count and the creation under one lock per management
        # device: two creations on it cannot both see room for one.
        with _room_lock(mgmtdev):
            check_room(client, name, mgmtdev)
            chardev = lifecycle.create_device(
                client, s, name, mgmtdev, mac=mac, mtu=mtu,
                max_vq_pairs=max_vq_pairs, rollback_timeout=rollback,
                client_factory=_client_factory)
        try:
            backend = dataclasses.astuple(s.backend(chardev, name))
        except exception.VdpaKernelError as e:
            LOG.warning('vhost backend of new vDPA device %s unreadable, '
                        'it is taken for one that cannot migrate live: %s',
                        name, e)
            backend = None
        # Plain values: privsep's channel carries msgpack, not dataclasses.
        return (chardev, dataclasses.asdict(client.get_device(name)),
                dataclasses.asdict(client.get_config(name)), backend)
    return _in_kernel(job, name, mgmtdev, 'create')


def bind_device(name: str) -> str:
    """Bind a device of ours to vhost_vdpa (privileged: uid 0 for sysfs).

    :returns: the ``/dev/vhost-vdpa-N`` path of the device.
    :raises: VdpaInvalidArgument and VdpaDeviceNotOurs before escalation
        (the daemon checks the management device too);
        VdpaPrivilegedCallsBusy; VdpaKernelTimeout; VdpaDeviceNotFound,
        VdpaBindError, VdpaChardevNotFound.
    """
    validate.device_name(name)
    check_ours(name, None, 'bind')
    try:
        with _admitted(name, '-', 'bind'):
            return channel.call(privsep.vdpa_pctxt, _bind_device, name,
                                action='bind', device=name)
    except comm.PrivsepTimeout:
        raise _timeout_error(name, '-', 'bind', CALL_TIMEOUT)


@privsep.vdpa_pctxt.entrypoint_with_timeout(CALL_TIMEOUT)
def _bind_device(name: str) -> str:
    check_ours(name, None, 'bind')

    def job(client: netlink.VdpaClient) -> str:
        check_ours_in_daemon(name, 'bind', client)
        s = _sysfs_factory()
        s.bind(name, sysfs.VHOST_VDPA)
        return s.chardev(name)
    return _in_kernel(job, name, '-', 'bind')


def delete_device(name: str, timeout: float,
                  management_devices: Sequence[str] | None = None) -> None:
    """Delete a device of ours unless a process holds it (privileged).

    :param timeout: seconds the daemon waits for the kernel's deletion
        (``[nova_vdpa] delete_timeout``); the call itself ends after
        :data:`DELETE_CALL_TIMEOUT` at most.
    :param management_devices: the caller's own ``management_devices``:
        it can only narrow what the daemon's configuration allows, so the
        caller needs no read of its own to refuse a device outside it
        (None: no narrowing; an empty list allows none).
    :raises: VdpaInvalidArgument and VdpaDeviceNotOurs before escalation
        (the daemon checks the management device too);
        VdpaPrivilegedCallsBusy; VdpaDeviceInUse, VdpaDeleteTimeout,
        VdpaKernelTimeout, VdpaDeviceNotFound.
    """
    validate.device_name(name)
    validate.timeout(timeout, name)
    for handle in management_devices or ():
        validate.mgmtdev_handle(handle)
    check_ours(name, None, 'delete')
    try:
        with _admitted(name, '-', 'delete'):
            channel.call(privsep.vdpa_pctxt, _delete_device, name,
                         float(timeout),
                         None if management_devices is None
                         else list(management_devices),
                         action='delete', device=name)
    except comm.PrivsepTimeout:
        raise _timeout_error(name, '-', 'delete', DELETE_CALL_TIMEOUT)


@privsep.vdpa_pctxt.entrypoint_with_timeout(DELETE_CALL_TIMEOUT)
def _delete_device(name: str, timeout: float,
                   management_devices: Sequence[str] | None = None) -> None:
    check_ours(name, None, 'delete')

    def check(device: model.VdpaDevice) -> None:
        check_ours(name, device.mgmtdev, 'delete', management_devices)
    lifecycle.delete_device(_sysfs_factory(), name, timeout=timeout,
                            client_factory=_client_factory, check=check)

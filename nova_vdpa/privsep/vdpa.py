"""The privileged vDPA primitives: create, bind, delete.

Each public function checks its arguments here, unprivileged, then calls
the matching ``_``-prefixed entrypoint, which runs in the privsep daemon
and does nothing but the kernel operation (nova_vdpa.kernel re-checks).
Call them by full path, ``nova_vdpa.privsep.vdpa.create_device(...)``, so
escalation is visible where it happens.
"""

import threading
import uuid

from oslo_config import cfg
from oslo_privsep import comm

from nova_vdpa import conf as vdpa_conf
from nova_vdpa import exception
from nova_vdpa.kernel import lifecycle
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs
from nova_vdpa.kernel import validate
import nova_vdpa.privsep

#: prefix of every device nova-vdpa creates; the Neutron port UUID follows
DEVICE_PREFIX = 'nvdpa-'

#: seconds a create or bind may take in the daemon before the caller
#: gets VdpaKernelTimeout (the daemon's thread may stay stuck longer)
CALL_TIMEOUT = 30.0
#: the same for a deletion, which has its own deadline inside the daemon
DELETE_CALL_TIMEOUT = validate.MAX_DELETE_TIMEOUT + CALL_TIMEOUT


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
_local = threading.local()


def _client() -> netlink.VdpaClient:
    # One socket per daemon thread: pyroute2 sockets are not shared.
    client = getattr(_local, 'client', None)
    if client is None or getattr(_local, 'factory', None) is not \
            _client_factory:
        client = _local.client = _client_factory()
        _local.factory = _client_factory
    return client


def create_device(name: str, mgmtdev: str, mac: str | None = None,
                  mtu: int | None = None, max_vq_pairs: int | None = None,
                  device_features: int | None = None) -> None:
    """Create a vDPA device (privileged: CAP_NET_ADMIN).

    :raises: VdpaInvalidArgument before escalation; the typed kernel
        errors of :meth:`nova_vdpa.kernel.netlink.VdpaClient.create_device`.
    """
    validate.create_args(name, mgmtdev, mac, mtu, max_vq_pairs,
                         device_features)
    _create_device(name, mgmtdev, mac, mtu, max_vq_pairs, device_features)


@nova_vdpa.privsep.vdpa_pctxt.entrypoint
def _create_device(name: str, mgmtdev: str, mac: str | None,
                   mtu: int | None, max_vq_pairs: int | None,
                   device_features: int | None) -> None:
    _client().create_device(name, mgmtdev, mac=mac, mtu=mtu,
                            max_vq_pairs=max_vq_pairs,
                            device_features=device_features)


def bind_device(name: str) -> str:
    """Bind ``name`` to vhost_vdpa (privileged: uid 0 for sysfs).

    :returns: the ``/dev/vhost-vdpa-N`` path of the device.
    :raises: VdpaInvalidArgument before escalation; VdpaDeviceNotFound,
        VdpaBindError, VdpaChardevNotFound.
    """
    validate.device_name(name)
    return _bind_device(name)


@nova_vdpa.privsep.vdpa_pctxt.entrypoint
def _bind_device(name: str) -> str:
    s = _sysfs_factory()
    s.bind(name, sysfs.VHOST_VDPA)
    return s.chardev(name)


def delete_device(name: str,
                  timeout: float = lifecycle.DEFAULT_DELETE_TIMEOUT) -> None:
    """Delete ``name`` unless a process holds its chardev (privileged).

    :raises: VdpaInvalidArgument before escalation; VdpaDeviceInUse,
        VdpaDeleteTimeout, VdpaDeviceNotFound.
    """
    validate.device_name(name)
    validate.delete_timeout(timeout, name)
    _delete_device(name, float(timeout))


@nova_vdpa.privsep.vdpa_pctxt.entrypoint
def _delete_device(name: str, timeout: float) -> None:
    lifecycle.delete_device(_sysfs_factory(), name, timeout=timeout,
                            client_factory=_client_factory)

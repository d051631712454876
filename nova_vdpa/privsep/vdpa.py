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

"""The privileged vDPA primitives: create, bind, delete.

Each public function checks its arguments here, unprivileged, then calls
the matching ``_``-prefixed entrypoint, which runs in the privsep daemon
and does nothing but the kernel operation (nova_vdpa.kernel re-checks).
Call them by full path, ``nova_vdpa.privsep.vdpa.create_device(...)``, so
escalation is visible where it happens.
"""

import threading

from nova_vdpa.kernel import lifecycle
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs
from nova_vdpa.kernel import validate
import nova_vdpa.privsep

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


def delete_device(name: str, timeout: float) -> None:
    """Delete ``name`` unless a process holds its chardev (privileged).

    :param timeout: seconds to wait for the kernel: ``[nova_vdpa]
        delete_timeout``.

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

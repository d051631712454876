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

"""Create-and-bind and safe deletion of vDPA devices.

These combine the netlink client and sysfs into the two operations the rest
of nova-vdpa (and the privsep entrypoints) need:

* :func:`create_device`: create, bind to vhost_vdpa, return the chardev;
* :func:`delete_device`: refuse while a process (QEMU) holds the chardev,
  and never wait for the kernel without a deadline. The kernel's DEV_DEL
  blocks, uninterruptibly, until the chardev is closed; deletion therefore
  runs on a :class:`~nova_vdpa.kernel.worker.DeadlineWorker` of its own,
  the lookup, the checks and DEV_DEL as one job (one thread hand-off).
  The rollback of a creation that could not be bound is such a deletion,
  with its own deadline.

Only the standard library (``logging``, never oslo.log) and
nova_vdpa.kernel are imported here.
"""

import logging
from typing import Callable

from nova_vdpa import exception
from nova_vdpa.kernel import model
from nova_vdpa.kernel import native
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs as sysfs_mod
from nova_vdpa.kernel import validate
from nova_vdpa.kernel import worker as worker_mod

LOG = logging.getLogger(__name__)

ClientFactory = Callable[[], netlink.VdpaClient]

#: seconds the rollback of a creation that could not be bound may wait
DEFAULT_ROLLBACK_TIMEOUT = 10.0


def create_device(client: netlink.VdpaClient, sysfs: sysfs_mod.VdpaSysfs,
                  name: str, mgmtdev: str, mac: str | None = None,
                  mtu: int | None = None, max_vq_pairs: int | None = None,
                  device_features: int | None = None, *,
                  rollback_timeout: float = DEFAULT_ROLLBACK_TIMEOUT,
                  client_factory: ClientFactory = netlink.VdpaClient
                  ) -> str:
    """Create a device, bind it to vhost_vdpa and return its chardev.

    A device that cannot be bound is deleted again and the binding error
    raised. The rollback is a :func:`delete_device`, with its checks and
    ``rollback_timeout``; if it cannot delete, it logs why and names the
    device left behind.

    :param client: the caller's client, for DEV_NEW (callers run this on a
        :class:`~nova_vdpa.kernel.worker.DeadlineWorker`).
    :param rollback_timeout: seconds the rollback may wait for the kernel.
    :param client_factory: builds the rollback's worker client.
    :returns: the ``/dev/vhost-vdpa-N`` path.
    :raises: what :meth:`VdpaClient.create_device` and
        :meth:`VdpaSysfs.bind` raise, and VdpaChardevNotFound.
    """
    validate.timeout(rollback_timeout, name)
    client.create_device(name, mgmtdev, mac=mac, mtu=mtu,
                         max_vq_pairs=max_vq_pairs,
                         device_features=device_features)
    try:
        sysfs.bind(name, sysfs_mod.VHOST_VDPA)
        return sysfs.chardev(name)
    except exception.VdpaKernelError as bind_error:
        try:
            delete_device(sysfs, name, timeout=rollback_timeout,
                          client_factory=client_factory,
                          action='roll back the creation of')
        except exception.VdpaKernelError as e:
            LOG.error('vDPA device %s on %s could not be bound (%s) and '
                      'could not be deleted again, it is left behind: %s',
                      name, mgmtdev, bind_error, e)
        raise


def check_not_in_use(sysfs: sysfs_mod.VdpaSysfs, name: str,
                     mgmtdev: Callable[[], str] = lambda: '-',
                     action: str = 'delete') -> None:
    """Raise if a process holds ``name``'s vhost-vdpa chardev open.

    See :meth:`nova_vdpa.kernel.sysfs.VdpaSysfs.check_not_in_use`.

    :param mgmtdev: returns the device's management device, for the
        error message only.
    :raises: VdpaDeviceInUse naming the holder when /proc lets us see it.
    """
    try:
        sysfs.check_not_in_use(name, action=action)
    except exception.VdpaDeviceInUse as e:
        raise exception.VdpaDeviceInUse(**dict(e.kwargs, mgmtdev=mgmtdev()))


def delete_device(sysfs: sysfs_mod.VdpaSysfs, name: str, *,
                  timeout: float,
                  client_factory: ClientFactory = netlink.VdpaClient,
                  check: Callable[[model.VdpaDevice], None] | None = None,
                  action: str = 'delete') -> None:
    """Delete ``name`` unless it is in use; never block past ``timeout``.

    :param sysfs: where to look for holders of the chardev.
    :param name: the device to delete.
    :param timeout: seconds to wait for the kernel (a process may open the
        chardev between the check and the deletion); callers pass
        ``[nova_vdpa] delete_timeout`` (this layer reads no configuration).
    :param client_factory: builds the worker thread's netlink client.
    :param check: called with the device as the kernel reports it, before
        anything else; raises to refuse the deletion (the privsep daemon
        checks the management device with it).
    :param action: what the deletion is for, in a VdpaDeviceInUse.
    :raises: what ``check`` raises, VdpaDeviceInUse, VdpaDeleteTimeout,
        VdpaKernelTimeout (no answer to the lookup in time, or an earlier
        call is still stuck in the kernel), VdpaDeviceNotFound,
        VdpaNotLoaded, VdpaPermissionDenied, VdpaInvalidArgument
    """
    validate.existing_device_name(name)
    validate.timeout(timeout, name)
    # Shared with the worker's OS thread: a native lock.
    lock = native.threading.Lock()
    # Set when the caller gives up: a lookup that answers late must not
    # go on to delete, when the name may belong to a new device.
    abandoned: list[bool] = []
    # The management device, once the checks passed and DEV_DEL is sent.
    deleting: list[str] = []

    def job(client: netlink.VdpaClient) -> None:
        # One job on the worker: the lookup, the checks and the deletion
        # cost one hand-off, under one deadline.
        # The kernel's answer first: a device that is gone, or vdpa
        # unloaded, is said so by netlink, not guessed from sysfs.
        device = client.get_device(name)
        if check is not None:
            check(device)
        sysfs.check_not_in_use(name, action=action, mgmtdev=device.mgmtdev)
        with lock:
            if abandoned:
                return
            deleting.append(device.mgmtdev)
        client.delete_device(name)

    def on_timeout() -> exception.VdpaKernelError:
        with lock:
            abandoned.append(True)
            if deleting:
                return exception.VdpaDeleteTimeout(
                    device=name, mgmtdev=deleting[0],
                    attribute='VDPA_ATTR_DEV_NAME', timeout=timeout)
        return exception.VdpaKernelTimeout(
            device=name, mgmtdev='-', attribute='device get before delete',
            timeout=timeout)

    worker_mod.shared(client_factory, 'delete').call(
        job, timeout=timeout, device=name, what='delete',
        on_timeout=on_timeout)

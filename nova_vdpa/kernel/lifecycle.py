"""Create-and-bind and safe deletion of vDPA devices.

These combine the netlink client and sysfs into the two operations the rest
of nova-vdpa (and the privsep entrypoints) need:

* :func:`create_device`: create, bind to vhost_vdpa, return the chardev;
* :func:`delete_device`: refuse while a process (QEMU) holds the chardev,
  and never wait for the kernel without a deadline. The kernel's DEV_DEL
  blocks, uninterruptibly, until the chardev is closed; deletion therefore
  runs on a worker thread that owns its own netlink socket.

Only the standard library and nova_vdpa.kernel are imported here.
"""

import concurrent.futures
import threading
from typing import Any, Callable

from nova_vdpa import exception
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs as sysfs_mod
from nova_vdpa.kernel import validate

#: seconds a deletion may take before the caller gets an error
DEFAULT_DELETE_TIMEOUT = 10.0

ClientFactory = Callable[[], netlink.VdpaClient]


def create_device(client: netlink.VdpaClient, sysfs: sysfs_mod.VdpaSysfs,
                  name: str, mgmtdev: str, mac: str | None = None,
                  mtu: int | None = None, max_vq_pairs: int | None = None,
                  device_features: int | None = None) -> str:
    """Create a device, bind it to vhost_vdpa and return its chardev.

    A device that cannot be bound is deleted again (nobody can hold a
    chardev that never existed) and the binding error raised.

    :returns: the ``/dev/vhost-vdpa-N`` path.
    :raises: what :meth:`VdpaClient.create_device` and
        :meth:`VdpaSysfs.bind` raise, and VdpaChardevNotFound.
    """
    client.create_device(name, mgmtdev, mac=mac, mtu=mtu,
                         max_vq_pairs=max_vq_pairs,
                         device_features=device_features)
    try:
        sysfs.bind(name, sysfs_mod.VHOST_VDPA)
        return sysfs.chardev(name)
    except exception.VdpaKernelError:
        try:
            client.delete_device(name)
        except exception.VdpaKernelError:
            pass
        raise


def check_not_in_use(sysfs: sysfs_mod.VdpaSysfs, name: str,
                     mgmtdev: Callable[[], str] = lambda: '-') -> None:
    """Raise if a process holds ``name``'s vhost-vdpa chardev open.

    :param mgmtdev: returns the device's management device, for the
        error message only.
    :raises: VdpaDeviceInUse naming the holder when /proc lets us see it.
    """
    if sysfs.driver(name) != sysfs_mod.VHOST_VDPA:
        # Only vhost_vdpa exposes a chardev userspace could hold.
        return
    try:
        chardev = sysfs.chardev(name)
    except exception.VdpaChardevNotFound:
        return
    if not sysfs.is_open(chardev):
        return
    holders = sysfs.holders(chardev)
    if holders:
        pid, cmdline = str(holders[0].pid), holders[0].cmdline
    else:
        pid = 'unknown'
        cmdline = ('a process whose open files this process may not read; '
                   'try fuser %s' % chardev)
    raise exception.VdpaDeviceInUse(device=name, mgmtdev=mgmtdev(),
                                    attribute=chardev, pid=pid,
                                    cmdline=cmdline)


class _DeleteWorker:
    """One thread with its own netlink socket, running DEV_DEL requests."""

    def __init__(self, client_factory: ClientFactory) -> None:
        self._factory = client_factory
        self._local = threading.local()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix='vdpa-delete')

    def _client(self) -> netlink.VdpaClient:
        client = getattr(self._local, 'client', None)
        if client is None:
            client = self._local.client = self._factory()
        return client

    def _delete(self, name: str) -> None:
        self._client().delete_device(name)

    def _mgmtdev(self, name: str) -> str:
        return self._client().get_device(name).mgmtdev

    def mgmtdev(self, name: str) -> str:
        """The management device of ``name`` ('?' if it cannot be read)."""
        try:
            return self._pool.submit(self._mgmtdev, name).result(timeout=5)
        except Exception:
            return '?'

    def run(self, name: str, timeout: float) -> None:
        future = self._pool.submit(self._delete, name)
        try:
            future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            # A request still queued behind a stuck one must not run later,
            # when the name may belong to a new device.
            future.cancel()
            raise exception.VdpaDeleteTimeout(
                device=name, mgmtdev='-', attribute='VDPA_ATTR_DEV_NAME',
                timeout=timeout)


_workers: dict[Any, _DeleteWorker] = {}
_workers_lock = threading.Lock()


def _worker(client_factory: ClientFactory) -> _DeleteWorker:
    with _workers_lock:
        worker = _workers.get(client_factory)
        if worker is None:
            worker = _workers[client_factory] = _DeleteWorker(client_factory)
        return worker


def delete_device(sysfs: sysfs_mod.VdpaSysfs, name: str,
                  timeout: float = DEFAULT_DELETE_TIMEOUT,
                  client_factory: ClientFactory = netlink.VdpaClient) -> None:
    """Delete ``name`` unless it is in use; never block past ``timeout``.

    :param sysfs: where to look for holders of the chardev.
    :param name: the device to delete.
    :param timeout: seconds to wait for the kernel (a process may open the
        chardev between the check and the deletion).
    :param client_factory: builds the worker thread's netlink client.
    :raises: VdpaDeviceInUse, VdpaDeleteTimeout, VdpaDeviceNotFound,
        VdpaPermissionDenied, VdpaInvalidArgument
    """
    validate.device_name(name)
    validate.delete_timeout(timeout, name)
    worker = _worker(client_factory)
    check_not_in_use(sysfs, name, lambda: worker.mgmtdev(name))
    worker.run(name, timeout)

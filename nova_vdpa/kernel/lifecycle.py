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
  runs on a worker thread that owns its own netlink socket, the lookup,
  the checks and DEV_DEL as one job (one thread hand-off).

Only the standard library (``logging``, never oslo.log) and
nova_vdpa.kernel are imported here.
"""

import atexit
import concurrent.futures
import logging
import queue
import threading
from typing import Any, Callable

from nova_vdpa import exception
from nova_vdpa.kernel import model
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs as sysfs_mod
from nova_vdpa.kernel import validate

LOG = logging.getLogger(__name__)

ClientFactory = Callable[[], netlink.VdpaClient]


def create_device(client: netlink.VdpaClient, sysfs: sysfs_mod.VdpaSysfs,
                  name: str, mgmtdev: str, mac: str | None = None,
                  mtu: int | None = None, max_vq_pairs: int | None = None,
                  device_features: int | None = None) -> str:
    """Create a device, bind it to vhost_vdpa and return its chardev.

    A device that cannot be bound is deleted again and the binding error
    raised. The rollback checks for a holder first, like any deletion; if
    it cannot delete, it logs why and names the device left behind.

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
    except exception.VdpaKernelError as bind_error:
        try:
            sysfs.check_not_in_use(name, action='roll back the creation of',
                                   mgmtdev=mgmtdev)
            client.delete_device(name)
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


class _DeleteWorker:
    """One thread with its own netlink socket, running DEV_DEL requests.

    Hand-made rather than a ThreadPoolExecutor so that the thread closes
    its own socket at exit: pyroute2 keeps one asyncio event loop per
    thread, which only that thread can close; left to the garbage
    collector it prints an "Invalid file descriptor" traceback.

    A daemon thread, so Python's exit does not wait for it; the kernel
    still does: DEV_DEL waits uninterruptibly for the chardev's holder, so
    a process with a stuck deletion ends only once the holder closes it
    (seen in the bed). Refusing in-use devices first keeps that to the
    window between the check and the request.

    While a request that missed its caller's deadline is still in the
    kernel, later deletions fail at once (:meth:`check_not_stuck`) instead
    of queueing behind it, each for its own deadline.
    """

    #: seconds the exit hook waits for the thread to close its socket
    EXIT_WAIT = 2.0

    def __init__(self, client_factory: ClientFactory) -> None:
        self._factory = client_factory
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running: concurrent.futures.Future[Any] | None = None
        #: the request in the kernel past a caller's deadline, and that
        #: deadline
        self._stuck: tuple[concurrent.futures.Future[Any], float] | None = \
            None
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name='vdpa-delete')
        self._thread.start()
        atexit.register(self.stop)

    def _serve(self) -> None:
        client = None
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                future, fn, name = job
                if not future.set_running_or_notify_cancel():
                    continue  # cancelled while queued
                with self._lock:
                    self._running = future
                try:
                    if client is None:
                        client = self._new_client(name)
                    future.set_result(fn(client, name))
                except BaseException as e:
                    future.set_exception(e)
                finally:
                    with self._lock:
                        self._running = None
        finally:
            if client is not None:
                client.close()

    def _new_client(self, name: str) -> netlink.VdpaClient:
        """A client for this thread; its errors name the device asked for."""
        try:
            return self._factory()
        except exception.VdpaKernelError as e:
            if e.kwargs.get('device', '-') != '-':
                raise
            raise type(e)(**dict(e.kwargs, device=name)) from None

    def _submit(self, fn: Callable[[netlink.VdpaClient, str], Any],
                name: str) -> 'concurrent.futures.Future[Any]':
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((future, fn, name))
        return future

    def check_not_stuck(self, name: str) -> None:
        """Fail at once while a request that missed its deadline runs.

        :raises: VdpaKernelTimeout
        """
        with self._lock:
            if self._stuck is None:
                return
            stuck, timeout = self._stuck
            if stuck.done():
                self._stuck = None
                return
        raise exception.VdpaKernelTimeout(
            device=name, mgmtdev='-', attribute='delete', timeout=timeout)

    def timed_out(self, timeout: float) -> None:
        """Note that a caller gave up after ``timeout`` seconds."""
        with self._lock:
            # The request in the kernel now: the caller's own, or the one
            # it queued behind.
            if self._running is not None:
                self._stuck = (self._running, timeout)

    def stop(self) -> None:
        """Let the thread close its socket and end (a stuck one stays)."""
        self._jobs.put(None)
        self._thread.join(self.EXIT_WAIT)


_workers: dict[Any, _DeleteWorker] = {}
_workers_lock = threading.Lock()


def _worker(client_factory: ClientFactory) -> _DeleteWorker:
    with _workers_lock:
        worker = _workers.get(client_factory)
        if worker is None:
            worker = _workers[client_factory] = _DeleteWorker(client_factory)
        return worker


def delete_device(sysfs: sysfs_mod.VdpaSysfs, name: str, *,
                  timeout: float,
                  client_factory: ClientFactory = netlink.VdpaClient,
                  check: Callable[[model.VdpaDevice], None] | None = None
                  ) -> None:
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
    :raises: what ``check`` raises, VdpaDeviceInUse, VdpaDeleteTimeout,
        VdpaKernelTimeout (no answer to the lookup in time, or an earlier
        deletion is still stuck in the kernel), VdpaDeviceNotFound,
        VdpaNotLoaded, VdpaPermissionDenied, VdpaInvalidArgument
    """
    validate.existing_device_name(name)
    validate.timeout(timeout, name)
    worker = _worker(client_factory)
    worker.check_not_stuck(name)
    lock = threading.Lock()
    # Set by the caller when it gives up: a lookup that answers late must
    # not go on to delete, when the name may belong to a new device.
    abandoned: list[bool] = []
    # The management device, once the checks passed and DEV_DEL is sent.
    deleting: list[str] = []

    def job(client: netlink.VdpaClient, name: str) -> None:
        # One job on the worker: the lookup, the checks and the deletion
        # cost one hand-off, under one deadline.
        # The kernel's answer first: a device that is gone, or vdpa
        # unloaded, is said so by netlink, not guessed from sysfs.
        device = client.get_device(name)
        if check is not None:
            check(device)
        sysfs.check_not_in_use(name, action='delete', mgmtdev=device.mgmtdev)
        with lock:
            if abandoned:
                return
            deleting.append(device.mgmtdev)
        client.delete_device(name)

    future = worker._submit(job, name)
    try:
        future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        with lock:
            abandoned.append(True)
            # Not run later if still queued behind a stuck request.
            future.cancel()
        worker.timed_out(timeout)
        if deleting:
            raise exception.VdpaDeleteTimeout(
                device=name, mgmtdev=deleting[0],
                attribute='VDPA_ATTR_DEV_NAME', timeout=timeout)
        raise exception.VdpaKernelTimeout(
            device=name, mgmtdev='-', attribute='device get before delete',
            timeout=timeout)

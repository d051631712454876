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

"""Kernel calls that can block, each on a worker thread with a deadline.

A vdpa netlink request, or a sysfs write that unbinds a device, waits in
uninterruptible sleep while a deletion waits for a process to close the
device's vhost-vdpa character device: DEV_DEL keeps the kernel's vdpa lock
(``vdpa_dev_lock``, taken for writing by DEV_NEW and DEV_DEL, for reading
by every GET) until the holder lets go, and nothing can take a request
back once it sleeps there (seen on 6.12 in the bed). A socket receive
timeout does not help: a generic netlink request runs in the sender's
``sendmsg``, so the call sleeps before there is anything to receive.

So every such call runs on a :class:`DeadlineWorker`: one thread with its
own netlink client, each call under its caller's deadline. Only the
worker's thread ever sleeps in the kernel; the caller gets
:class:`~nova_vdpa.exception.VdpaKernelTimeout` at its deadline. The
worker is used by the kernel layer's deletion
(:mod:`nova_vdpa.kernel.lifecycle`), by the privsep daemon for creation,
binding and backend reads, and by nova-compute's allocator for its reads.

While a call that missed its deadline is still in the kernel, every later
call of the process fails at once (:func:`check_not_stuck`): the state is
one per process because the lock is one per kernel, so a stuck deletion
makes creations and bindings fail fast too, instead of each waiting out
its own deadline behind it. A call cancelled before it started never runs
(the kernel may have changed meanwhile).

Only the standard library (``logging``, never oslo.log) and
nova_vdpa.kernel are imported here.
"""

import atexit
import concurrent.futures
import logging
import queue
import threading
import time
from typing import Any, Callable

from nova_vdpa import exception
from nova_vdpa.kernel import netlink

LOG = logging.getLogger(__name__)

ClientFactory = Callable[[], netlink.VdpaClient]
#: builds the error a caller gets at its deadline
ErrorFactory = Callable[[], exception.VdpaKernelError]

_stuck_lock = threading.Lock()
#: calls past their caller's deadline, still in the kernel: (call, the
#: deadline it missed, what it was)
_stuck: list[tuple['concurrent.futures.Future[Any]', float, str]] = []


def _note_stuck(call: 'concurrent.futures.Future[Any]', timeout: float,
                what: str) -> None:
    with _stuck_lock:
        _stuck.append((call, timeout, what))
    LOG.warning('A vdpa kernel call (%s) missed its %s s deadline and is '
                'still in the kernel: vdpa calls of this process fail at '
                'once until it returns', what, timeout)


def stuck() -> tuple[float, str] | None:
    """The deadline and name of a call still stuck in the kernel, if any."""
    with _stuck_lock:
        _stuck[:] = [s for s in _stuck if not s[0].done()]
        return (_stuck[0][1], _stuck[0][2]) if _stuck else None


def check_not_stuck(device: str, mgmtdev: str, what: str) -> None:
    """Fail at once while a call that missed its deadline is in the kernel.

    For every caller about to ask the kernel something that takes its vdpa
    lock, here or in the privsep daemon.

    :param device: for the error message; so are ``mgmtdev`` and ``what``.
    :raises: VdpaKernelTimeout
    """
    found = stuck()
    if found is not None:
        timeout, earlier = found
        raise exception.VdpaKernelTimeout(
            device=device, mgmtdev=mgmtdev, timeout=timeout,
            attribute='%s (an earlier %s is still stuck)' % (what, earlier))


def wait_not_stuck(timeout: float) -> bool:
    """Wait until no call is stuck; whether that happened in ``timeout``."""
    deadline = time.monotonic() + timeout
    while stuck() is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


class DeadlineWorker:
    """One thread, own netlink client, each call under a deadline.

    Hand-made rather than a ThreadPoolExecutor so that the thread closes
    its own client at exit: pyroute2 keeps one asyncio event loop per
    thread, which only that thread can close; left to the garbage
    collector it prints an "Invalid file descriptor" traceback.

    A daemon thread, so Python's exit does not wait for it; the kernel
    still does: a process with a call stuck behind a held chardev ends
    only once the holder closes it (seen in the bed).

    :param client_factory: builds the thread's netlink client, on the
        thread, at its first call.
    :param name: the thread's name.
    """

    #: seconds stop() waits for the thread to close its socket
    EXIT_WAIT = 2.0

    def __init__(self, client_factory: ClientFactory,
                 name: str = 'vdpa-kernel') -> None:
        self._factory = client_factory
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running: tuple[concurrent.futures.Future[Any], str] | None = \
            None
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=name)
        self._thread.start()

    def _serve(self) -> None:
        client = None
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                future, fn, device, what = job
                if not future.set_running_or_notify_cancel():
                    continue  # cancelled while queued
                with self._lock:
                    self._running = (future, what)
                try:
                    if client is None:
                        client = self._new_client(device)
                    future.set_result(fn(client))
                except BaseException as e:
                    future.set_exception(e)
                finally:
                    with self._lock:
                        self._running = None
        finally:
            if client is not None:
                client.close()

    def _new_client(self, device: str) -> netlink.VdpaClient:
        """A client for this thread; its errors name the device asked for."""
        try:
            return self._factory()
        except exception.VdpaKernelError as e:
            if e.kwargs.get('device', '-') != '-':
                raise
            raise type(e)(**dict(e.kwargs, device=device)) from None

    def submit(self, fn: Callable[[netlink.VdpaClient], Any], device: str,
               what: str) -> 'concurrent.futures.Future[Any]':
        """Queue ``fn(client)``, no deadline, no check (for tests, syncs)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((future, fn, device, what))
        return future

    def call(self, fn: Callable[[netlink.VdpaClient], Any], *,
             timeout: float, device: str, what: str, mgmtdev: str = '-',
             on_timeout: ErrorFactory | None = None) -> Any:
        """``fn(client)`` on the worker's thread, within ``timeout`` seconds.

        Fails at once while a call of this process is stuck in the
        kernel. At the deadline, ``fn`` is cancelled if it has not
        started; the call in the kernel then (``fn``, or the one it
        queued behind) is noted as stuck.

        :param device: for the error message; so are ``mgmtdev``, ``what``.
        :param on_timeout: builds the error raised at the deadline, instead
            of VdpaKernelTimeout; called once ``fn`` cannot start any more.
        :raises: VdpaKernelTimeout (or what ``on_timeout`` builds), and
            what ``fn`` raises.
        """
        check_not_stuck(device, mgmtdev, what)
        future = self.submit(fn, device, what)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            with self._lock:
                # Not run later, against a kernel that changed meanwhile.
                future.cancel()
                running = self._running
            error = on_timeout() if on_timeout is not None else \
                exception.VdpaKernelTimeout(device=device, mgmtdev=mgmtdev,
                                            attribute=what, timeout=timeout)
            if running is not None:
                _note_stuck(running[0], timeout, running[1])
            raise error from None

    def stop(self) -> None:
        """Let the thread close its socket and end (a stuck one stays)."""
        self._jobs.put(None)
        self._thread.join(self.EXIT_WAIT)


_shared: dict[tuple[str, Any], DeadlineWorker] = {}
_shared_lock = threading.Lock()


def shared(client_factory: ClientFactory, role: str) -> DeadlineWorker:
    """The process's worker for ``role`` and ``client_factory``.

    Roles keep a job that waits for another worker's (a creation rolled
    back by a deletion) off that worker's queue; each stops at exit.
    """
    key = (role, client_factory)
    with _shared_lock:
        found = _shared.get(key)
        if found is None:
            found = _shared[key] = DeadlineWorker(client_factory,
                                                  name='vdpa-' + role)
            atexit.register(found.stop)
        return found

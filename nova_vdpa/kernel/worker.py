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

The worker's thread is an OS thread in both of nova-compute's
concurrency modes, and so is every lock and event it shares with its
callers (:mod:`nova_vdpa.kernel.native`): under eventlet a caller is a
green thread that waits for its call green, and a call asleep in the
kernel stops no other green thread.

Only the standard library (``logging``, never oslo.log) and
nova_vdpa.kernel are imported here.
"""

import atexit
import logging
import time
from typing import Any, Callable

from nova_vdpa import exception
from nova_vdpa.kernel import native
from nova_vdpa.kernel import netlink

LOG = logging.getLogger(__name__)

ClientFactory = Callable[[], netlink.VdpaClient]
#: builds the error a caller gets at its deadline
ErrorFactory = Callable[[], exception.VdpaKernelError]


class CallTimeout(Exception):
    """A :class:`Call`'s result was not there in time."""


class CallCancelled(Exception):
    """A :class:`Call` was cancelled before it started."""


class Call:
    """One job of a worker: queued, running, cancelled or done.

    What a caller (any thread, green or not) and the worker's OS thread
    share, so its lock and event are native ones. The subset of
    ``concurrent.futures.Future`` the module needs, which that class cannot
    give under eventlet: it would make its condition from the patched
    ``threading``.
    """

    def __init__(self, fn: Callable[[netlink.VdpaClient], Any],
                 device: str, what: str) -> None:
        self.fn = fn
        self.device = device
        self.what = what
        self._lock = native.threading.Lock()
        self._ended = native.threading.Event()
        self._state = 'queued'
        self._result: Any = None
        self._error: BaseException | None = None

    def start(self) -> bool:
        """For the worker: mark it running, unless it was cancelled."""
        with self._lock:
            if self._state != 'queued':
                return False
            self._state = 'running'
            return True

    def finish(self, result: Any = None,
               error: BaseException | None = None) -> None:
        """For the worker: what it returned or raised."""
        with self._lock:
            self._state = 'done'
            self._result, self._error = result, error
        self._ended.set()

    def cancel(self) -> bool:
        """Never run it, unless it started; whether it will not run."""
        with self._lock:
            if self._state == 'queued':
                self._state = 'cancelled'
                self._ended.set()
            return self._state == 'cancelled'

    def done(self) -> bool:
        """Whether it ended: done or cancelled."""
        return bool(self._ended.is_set())

    def result(self, timeout: float | None = None) -> Any:
        """What ``fn`` returned; raises what it raised.

        :raises: CallTimeout when it has not ended within ``timeout``;
            CallCancelled when it was cancelled.
        """
        if not native.wait(self._ended, timeout):
            raise CallTimeout(self.what)
        if self._state == 'cancelled':
            raise CallCancelled(self.what)
        if self._error is not None:
            raise self._error
        return self._result


_stuck_lock = native.threading.Lock()
#: calls past their caller's deadline, still in the kernel: (call, the
#: deadline it missed)
_stuck: list[tuple[Call, float]] = []


def _note_stuck(call: Call, timeout: float) -> None:
    with _stuck_lock:
        _stuck.append((call, timeout))
    LOG.warning('A vdpa kernel call (%s) missed its %s s deadline and is '
                'still in the kernel: vdpa calls of this process fail at '
                'once until it returns', call.what, timeout)


def stuck() -> tuple[float, str] | None:
    """The deadline and name of a call still stuck in the kernel, if any."""
    with _stuck_lock:
        _stuck[:] = [s for s in _stuck if not s[0].done()]
        return (_stuck[0][1], _stuck[0][0].what) if _stuck else None


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
        self._jobs: Any = native.queue.SimpleQueue()
        self._lock = native.threading.Lock()
        self._running: Call | None = None
        self._thread = native.threading.Thread(target=self._serve,
                                               daemon=True, name=name)
        self._thread.start()

    def _serve(self) -> None:
        client = None
        try:
            while True:
                job: Call | None = self._jobs.get()
                if job is None:
                    return
                if not job.start():
                    continue  # cancelled while queued
                with self._lock:
                    self._running = job
                try:
                    if client is None:
                        client = self._new_client(job.device)
                    job.finish(result=job.fn(client))
                except BaseException as e:
                    job.finish(error=e)
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
               what: str) -> Call:
        """Queue ``fn(client)``, no deadline, no check (for tests, syncs)."""
        job = Call(fn, device, what)
        self._jobs.put(job)
        return job

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
        job = self.submit(fn, device, what)
        try:
            return job.result(timeout=timeout)
        except CallTimeout:
            with self._lock:
                # Not run later, against a kernel that changed meanwhile.
                job.cancel()
                running = self._running
            error = on_timeout() if on_timeout is not None else \
                exception.VdpaKernelTimeout(device=device, mgmtdev=mgmtdev,
                                            attribute=what, timeout=timeout)
            if running is not None:
                _note_stuck(running, timeout)
            raise error from None

    def stop(self) -> None:
        """Let the thread close its socket and end (a stuck one stays)."""
        self._jobs.put(None)
        self._thread.join(self.EXIT_WAIT)


_shared: dict[tuple[str, Any], DeadlineWorker] = {}
_shared_lock = native.threading.Lock()


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

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

"""Kernel reads on one thread, each with a deadline.

A vdpa netlink request that waits for the kernel's lock (held by a
deletion waiting for a vhost-vdpa holder) sleeps uninterruptibly; nothing
can take it back. :class:`Reader` keeps that to one thread, and fails
every later call at once while it is stuck. Imports only the standard
library and nova_vdpa.
"""

import concurrent.futures
import queue
import threading
from typing import Any, Callable

from nova_vdpa import exception
from nova_vdpa.kernel import netlink

ClientFactory = Callable[[], netlink.VdpaClient]


class Reader:
    """One thread with its own netlink client, running reads on a deadline.

    A vdpa request waiting for the kernel's lock sleeps uninterruptibly,
    and nothing can take it back; so only this thread ever waits, and while
    it is stuck every caller fails at once instead of adding a thread that
    would be stuck too. The thread closes its own client at exit (pyroute2's
    event loop belongs to the thread that made it).
    """

    #: seconds close() waits for the thread to close its socket
    EXIT_WAIT = 2.0

    def __init__(self, client_factory: ClientFactory,
                 timeout: float) -> None:
        self._factory = client_factory
        self.timeout = timeout
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running: concurrent.futures.Future[Any] | None = None
        self._stuck: concurrent.futures.Future[Any] | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name='vdpa-reader')
        self._thread.start()

    def _serve(self) -> None:
        client = None
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                future, fn = job
                if not future.set_running_or_notify_cancel():
                    continue
                with self._lock:
                    self._running = future
                try:
                    if client is None:
                        client = self._factory()
                    future.set_result(fn(client))
                except BaseException as e:
                    future.set_exception(e)
                finally:
                    with self._lock:
                        self._running = None
        finally:
            if client is not None:
                client.close()

    def check(self, device: str, mgmtdev: str, what: str) -> None:
        """Fail at once while a read that missed its deadline is stuck.

        For callers about to ask the kernel elsewhere (the privsep daemon)
        without a read of their own first.

        :raises: VdpaKernelTimeout
        """
        with self._lock:
            if self._stuck is not None and not self._stuck.done():
                raise self._error(device, mgmtdev, what)
            self._stuck = None

    def call(self, fn: Callable[[netlink.VdpaClient], Any], device: str,
             mgmtdev: str, what: str) -> Any:
        """``fn(client)`` on the reader thread, within the deadline.

        :param device: for the error message; so are ``mgmtdev``, ``what``.
        :raises: VdpaKernelTimeout, and what ``fn`` raises.
        """
        self.check(device, mgmtdev, what)
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((future, fn))
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            with self._lock:
                # Not run later, against a kernel that changed meanwhile.
                future.cancel()
                self._stuck = self._running
            raise self._error(device, mgmtdev, what)

    def _error(self, device: str, mgmtdev: str,
               what: str) -> exception.VdpaKernelTimeout:
        return exception.VdpaKernelTimeout(device=device, mgmtdev=mgmtdev,
                                           attribute=what,
                                           timeout=self.timeout)

    def close(self) -> None:
        """Let the thread close its socket and end (a stuck one stays)."""
        self._jobs.put(None)
        self._thread.join(self.EXIT_WAIT)

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

"""Operating system threads in either concurrency mode of nova-compute.

nova-compute runs with native threads or, Nova's default before 2026.2,
under eventlet's monkey patching (``nova.monkey_patch``), which turns
``threading`` and ``queue`` into green threads of one OS thread. A vdpa
kernel call can sleep in the kernel (:mod:`nova_vdpa.kernel.worker`); on a
green thread that would stop every green thread of the process. So the
threads that make kernel calls are OS threads in both modes, and this
module is the one place that knows the modes apart:

* :data:`threading` and :data:`queue` are the standard modules as they
  were before any patching (``eventlet.patcher.original``), for the
  threads that may sleep in the kernel and for every lock, event or queue
  that such a thread touches: eventlet's green locks wake their waiters
  through the hub of the thread that releases them, so a green lock shared
  with another OS thread can leave a waiter asleep forever.
* :func:`wait` waits for a native event from any thread: under eventlet
  the caller is a green thread, and it sleeps green (polling the event)
  so that the rest of nova-compute keeps running meanwhile.

Logging from those threads is safe in both modes: oslo.log replaces the
handlers' locks with ones that work across OS threads when it finds
eventlet patched (``oslo_log.log._fix_eventlet_logging``).

Only the standard library is imported here; eventlet only if the process
already imported it.
"""

import queue as _queue
import sys
import threading as _threading
import time
import types
import typing as ty

#: the longest a green waiter sleeps between two looks at an event
POLL_MAX = 0.02


def _patcher() -> ty.Any:
    """eventlet's patcher when it patched ``thread`` in this process."""
    patcher = sys.modules.get('eventlet.patcher')
    if patcher is not None and patcher.is_monkey_patched('thread'):
        return patcher
    return None


def green() -> bool:
    """Whether eventlet turned this process's threads into green ones."""
    return _patcher() is not None


def _original(module: types.ModuleType) -> types.ModuleType:
    patcher = _patcher()
    if patcher is None:
        return module
    return ty.cast(types.ModuleType, patcher.original(module.__name__))


class _Native:
    """The unpatched module, looked up at each use, not at import.

    Our modules may be imported before Nova patches (a test runner, a
    command that imports the driver first), so the original is found when
    a thread, lock or queue is made.
    """

    def __init__(self, module: types.ModuleType) -> None:
        self._module = module

    def __getattr__(self, name: str) -> ty.Any:
        return getattr(_original(self._module), name)


#: the standard ``threading`` module, unpatched
threading: ty.Any = _Native(_threading)
#: the standard ``queue`` module, unpatched
queue: ty.Any = _Native(_queue)


def wait(event: ty.Any, timeout: float | None) -> bool:
    """Wait until a native ``threading.Event`` is set, or ``timeout``.

    :param event: made with :data:`threading`.
    :param timeout: seconds, or None for no limit.
    :returns: whether the event is set.
    """
    if not green():
        return bool(event.wait(timeout))
    eventlet = sys.modules['eventlet']  # green() found it patched
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.0005
    while not event.is_set():
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            pause = min(pause, left)
        eventlet.sleep(pause)
        pause = min(pause * 2, POLL_MAX)
    return True

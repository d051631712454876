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

"""Releases that cannot finish now: tried once, then retried, never waited for.

A device whose chardev a process still holds cannot be deleted: the
kernel's DEV_DEL would sleep, uninterruptibly and holding the vdpa lock,
until the holder closes it. QEMU does hold it after Nova believes the
interface gone (seen in the bed: a detach from a paused guest keeps the fd
until the domain is destroyed). :class:`DeferredReleases` wraps the
allocator: :meth:`~DeferredReleases.release` tries once and, when the
device is held, remembers the port and returns at once;
:meth:`~DeferredReleases.retry` (driven by nova-compute's periodic resource
update, no thread of its own) tries each remembered port again. What each
waits for is logged at WARNING once per state change (another error, or
another holder), at DEBUG while it stays the same: a guest paused for a
day does not write a warning every minute.

The memory here is a retry queue, not a record of devices: the kernel is
the record (every device of ours is named after its port). After a
restart, ``init_host``'s reconciliation finds what is left and queues the
held ones again.

A port allocated again while its release is pending (an interface
re-attached) leaves the queue first, under the same per-port lock the
retries take, so a retry never deletes a device a guest now uses.

Imports nothing of Nova: the same code runs in the test bed.
"""

import dataclasses
import time
import typing as ty

from oslo_concurrency import lockutils
from oslo_log import log as logging

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa import exception

LOG = logging.getLogger(__name__)

#: errors after which a release can succeed later: the device is held, a
#: deletion did not finish in time, the kernel is busy with one, or too
#: many privileged calls are in flight
RETRYABLE = (exception.VdpaDeviceInUse, exception.VdpaDeleteTimeout,
             exception.VdpaKernelTimeout, exception.VdpaPrivilegedCallsBusy)

#: errors no retry can cure: logged once, the port leaves the queue
PERMANENT = (exception.VdpaPortRequestInvalid, exception.VdpaDeviceNotOurs)

#: names the process holding a chardev: ``/dev/vhost-vdpa-N`` -> text such
#: as "libvirt domain instance-0001 (instance <uuid>)", or None
HolderFinder = ty.Callable[[str], 'str | None']


@dataclasses.dataclass
class PendingRelease:
    """A port whose device could not be released yet.

    :ivar port_id: the Neutron port's UUID.
    :ivar vf_address: its VF, for messages (None when unknown).
    :ivar device: the device's name, ``nvdpa-<port>``.
    :ivar instance_uuid: the instance the port belonged to, for the log.
    :ivar since: ``time.monotonic()`` of the first refused release.
    :ivar attempts: releases tried so far.
    :ivar error: what the last attempt raised.
    :ivar waiting_for: what the release waits for, as last logged (the
        holder, or the kernel).
    """

    port_id: str
    vf_address: str | None
    device: str
    instance_uuid: str | None
    since: float
    attempts: int
    error: Exception
    waiting_for: str = ''
    #: (error type, holder) last logged at WARNING
    logged: tuple[str, str] | None = None


def _lock(port_id: str) -> ty.ContextManager[ty.Any]:
    # The allocator takes 'nova-vdpa-port-<device>' inside a release; this
    # one spans the queue check and the release, and never the reverse.
    return lockutils.lock('nova-vdpa-deferred-' + port_id)


class DeferredReleases:
    """The allocator's releases, deferred while a process holds the device.

    :param allocator: what creates and deletes the devices.
    :param find_holder: names the holder in the waiting line (the driver
        asks libvirt); without it the line names the chardev and the pid
        the kernel boundary saw, if any.
    """

    def __init__(self, allocator: vdpa_allocator.Allocator,
                 find_holder: HolderFinder | None = None) -> None:
        self.allocator = allocator
        self._find_holder = find_holder
        self._pending: dict[str, PendingRelease] = {}

    def pending(self) -> list[PendingRelease]:
        """The releases waiting now, oldest first."""
        return sorted(self._pending.values(), key=lambda p: p.since)

    def allocate(self, request: vdpa_allocator.PortRequest
                 ) -> vdpa_allocator.Allocation:
        """Allocate the port's device, dropping its pending release first.

        See :meth:`nova_vdpa.allocator.Allocator.allocate` for what it
        raises.
        """
        self.forget(request.port_id)
        return self.allocator.allocate(request)

    def forget(self, port_id: str) -> None:
        """Drop the port's pending release; waits for a retry under way."""
        with _lock(port_id):
            dropped = self._pending.pop(port_id, None)
        if dropped is not None:
            LOG.info('The deferred release of vDPA device %(device)s is '
                     'dropped: port %(port)s is allocated again.',
                     {'device': dropped.device, 'port': port_id},
                     instance_uuid=dropped.instance_uuid)

    def release(self, port_id: str, vf_address: str | None = None,
                instance_uuid: str | None = None) -> bool:
        """Release the port's device now, or queue it; never waits for it.

        :returns: True when the device is gone (or was not ours to
            delete), False when its release is deferred.
        :raises: nothing: a release runs in cleanup paths that must go on.
        """
        with _lock(port_id):
            return self._attempt(port_id, vf_address, instance_uuid)

    def defer(self, port_id: str, vf_address: str | None,
              error: Exception, instance_uuid: str | None = None) -> None:
        """Queue a release someone else found refused (reconciliation)."""
        with _lock(port_id):
            if port_id not in self._pending:
                self._queue(port_id, vf_address, instance_uuid, error)

    def retry(self) -> list[PendingRelease]:
        """Try every pending release once; log what each still waits for.

        :returns: the releases still pending.
        """
        for pending in self.pending():
            with _lock(pending.port_id):
                if self._pending.get(pending.port_id) is not pending:
                    continue  # allocated again since
                done = self._attempt(pending.port_id, pending.vf_address,
                                     pending.instance_uuid)
            if done:
                LOG.info('Deferred release of vDPA device %(device)s of '
                         'port %(port)s done after %(age)d s.',
                         {'device': pending.device, 'port': pending.port_id,
                          'age': time.monotonic() - pending.since},
                         instance_uuid=pending.instance_uuid)
            else:
                self._log_waiting(pending)
        return self.pending()

    # ------------------------------------------------------------ private
    def _attempt(self, port_id: str, vf_address: str | None,
                 instance_uuid: str | None) -> bool:
        """One release; the queue updated. Called under the port's lock."""
        pending = self._pending.get(port_id)
        try:
            self.allocator.release(port_id, vf_address)
        except PERMANENT as e:
            self._pending.pop(port_id, None)
            LOG.error('Could not release the vDPA device of port %(port)s, '
                      'and no retry can: %(error)s',
                      {'port': port_id, 'error': e},
                      instance_uuid=instance_uuid)
            return True
        except Exception as e:  # a bug must not lose the release
            if pending is None:
                self._queue(port_id, vf_address, instance_uuid, e)
            else:
                pending.attempts += 1
                pending.error = e
            if not isinstance(e, RETRYABLE):
                LOG.exception('Unexpected error releasing the vDPA device '
                              'of port %s; it will be retried.', port_id)
            return False
        self._pending.pop(port_id, None)
        return True

    def _queue(self, port_id: str, vf_address: str | None,
               instance_uuid: str | None, error: Exception) -> None:
        pending = PendingRelease(
            port_id=port_id, vf_address=vf_address,
            device=vdpa_allocator.device_name(port_id),
            instance_uuid=instance_uuid, since=time.monotonic(),
            attempts=1, error=error)
        self._pending[port_id] = pending
        self._log_waiting(pending, first=True)

    def _holder(self, pending: PendingRelease, chardev: str) -> str:
        if self._find_holder is not None and chardev != '-':
            try:
                who = self._find_holder(chardev)
            except Exception as e:  # the warning matters more
                LOG.debug('Looking for the holder of %s failed: %s',
                          pending.device, e)
                who = None
            if who:
                return who
        error = pending.error
        # Empty after a privsep round trip; in-process callers keep them.
        kwargs = getattr(error, 'kwargs', {})
        if isinstance(error, exception.VdpaDeviceInUse):
            pid = kwargs.get('pid', 'unknown')
            return ('pid %s (%s)' % (pid, kwargs.get('cmdline', '?'))
                    if pid != 'unknown' else 'a process /proc does not show')
        if isinstance(error, exception.VdpaDeleteTimeout):
            return 'a process that opened it during the deletion'
        if isinstance(error, exception.VdpaKernelTimeout):
            return 'the kernel, busy with an earlier deletion'
        return 'a retry after an error'

    def _chardev(self, name: str) -> str:
        """The device's node now, from sysfs; '-' if it has none.

        Not from the error: privsep rebuilds exceptions from their message.
        """
        try:
            return self.allocator._sysfs.chardev(name)
        except exception.NovaVdpaException:
            return '-'

    def _log_waiting(self, pending: PendingRelease,
                     first: bool = False) -> None:
        chardev = self._chardev(pending.device)
        who = self._holder(pending, chardev)
        pending.waiting_for = who
        state = (type(pending.error).__name__, who)
        changed, pending.logged = state != pending.logged, state
        log = LOG.warning if changed else LOG.debug
        values = {'device': pending.device, 'port': pending.port_id,
                  'vf': pending.vf_address or '-', 'chardev': chardev,
                  'who': who,
                  'error': pending.error,
                  'age': time.monotonic() - pending.since,
                  'attempts': pending.attempts}
        if first:
            LOG.warning('vDPA device %(device)s of port %(port)s (VF '
                        '%(vf)s, %(chardev)s) is still open, held by '
                        '%(who)s: its release is deferred and retried at '
                        'each periodic resource update (%(error)s)',
                        values, instance_uuid=pending.instance_uuid)
        else:
            log('Release of vDPA device %(device)s of port %(port)s '
                '(VF %(vf)s, %(chardev)s) still waits for %(who)s, '
                'after %(attempts)d attempts in %(age)d s (%(error)s)',
                values, instance_uuid=pending.instance_uuid)

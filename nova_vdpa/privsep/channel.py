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

"""The privsep daemon's channel: alive, or failed at once and replaced.

Every privileged call of nova-vdpa goes through :func:`call`. This room
owns one question, "is the daemon still there?", and nothing of the
calls themselves; it imports only oslo.privsep and our exceptions.

What oslo.privsep 3.12.0 does when its daemon dies (``comm.ClientChannel``
and its reader thread, ``_reader_main``), and what is done here instead:

* **Killed after it read every request.** The reader sees EOF, fails the
  waiting calls with a bare ``OSError('Premature eof ...')`` and marks the
  channel not running; the next call starts a new daemon. Here the call
  gets :class:`~nova_vdpa.exception.VdpaPrivsepDied`.
* **Killed with a request still unread in its socket.** Linux resets the
  peer of a unix socket closed with unread data, so the reader's
  ``recv`` raises ``ConnectionResetError``, which ends the reader thread
  without failing the waiting calls or marking the channel down: the call
  in flight waited out its privsep timeout (330 s seen for a release)
  while holding the port's and VF's locks, and every later call failed
  with ``BrokenPipeError`` until nova-compute restarted. Here a watchdog
  thread per channel waits for the reader thread to end, whatever ended
  it, fails the calls still waiting at once and marks the channel down.
* **Killed between two calls.** The next call's send may meet EPIPE
  before the reader has seen EOF. The daemon never read that request, so
  it is sent once more, to a new daemon.

A channel found dead is stopped and a new daemon is started by the same
method (rootwrap in production, fork in tests). A call that was sent gets
VdpaPrivsepDied: whether its kernel work happened is unknown, and the
caller reads the kernel back (the allocator repairs a half-made device at
once, through the new daemon).

Why the reader thread and not the daemon's pid: the kernel closes a
killed process's socket, which the reader sees at once, while the client
does not know the daemon's pid (the rootwrap helper forks the daemon and
exits, so ``SO_PEERCRED`` names the helper, long gone). A stopped
(SIGSTOP) daemon is alive: its calls end with their privsep timeout.

The private names of oslo.privsep used here are listed, with why, in
:data:`PRIVATE_NAMES`; a release without one of them fails the first
call with :class:`~nova_vdpa.exception.PrivsepIncompatible`.
"""

import dataclasses
import threading
import typing as ty
import weakref

from oslo_log import log as logging
from oslo_privsep import comm
from oslo_privsep import daemon
from oslo_privsep import priv_context

from nova_vdpa import exception

LOG = logging.getLogger(__name__)

#: The oslo.privsep release every entry below was read against.
OSLO_PRIVSEP_RELEASE = '3.12.0'


@dataclasses.dataclass(frozen=True)
class PrivateName:
    """A member of an oslo.privsep class that is not its public API.

    :param owner: the class (or module).
    :param name: the member.
    :param why: what we do with it.
    :param on_instance: set in ``__init__``: checked on each channel
        (or, for the PrivContext's, on the context).
    """

    owner: ty.Any
    name: str
    why: str
    on_instance: bool = False


PRIVATE_NAMES: tuple[PrivateName, ...] = (
    PrivateName(priv_context.PrivContext, 'channel',
                'read: the running channel (None before the first call '
                'and after stop())', on_instance=True),
    PrivateName(comm.ClientChannel, 'reader_thread',
                'joined by the watchdog: it ends when the daemon goes',
                on_instance=True),
    PrivateName(comm.ClientChannel, 'running',
                'read, and set False when the reader died without doing '
                'it (ECONNRESET), so the channel is replaced',
                on_instance=True),
    PrivateName(comm.ClientChannel, 'lock',
                'held to fail waiting calls (their futures wait on it)',
                on_instance=True),
    PrivateName(comm.ClientChannel, 'outstanding_msgs',
                'the futures of the calls waiting for the daemon',
                on_instance=True),
    PrivateName(comm.Future, 'set_exception',
                'fails a waiting call at once'),
    PrivateName(comm.Future, 'error',
                'read: a call already failed is left alone',
                on_instance=True),
    PrivateName(comm.Future, 'data',
                'read: a call already answered is left alone',
                on_instance=True),
    PrivateName(daemon, 'ForkingClientChannel',
                'a dead fork-started daemon is replaced by fork too'),
)


class DaemonGone(OSError):
    """What a waiting call's future gets when the channel closed."""


#: serialises the replacement of a dead channel
_lock = threading.Lock()
#: channels that have a watchdog
_watched: 'weakref.WeakSet[ty.Any]' = weakref.WeakSet()
#: how each context's dropped channel had been started
_methods: 'weakref.WeakKeyDictionary[ty.Any, priv_context.Method]' = \
    weakref.WeakKeyDictionary()


def check(ctx: ty.Any = None, channel: ty.Any = None) -> None:
    """Check that every name in :data:`PRIVATE_NAMES` still exists.

    :param ctx: a ``PrivContext`` and ``channel`` a started
        ``ClientChannel``, for the names set in ``__init__``; without
        them those are skipped (a ``Future`` is made here).
    :raises: PrivsepIncompatible naming the first one missing.
    """
    instances = {priv_context.PrivContext: ctx, comm.ClientChannel: channel,
                 comm.Future: comm.Future(threading.Lock())}
    for entry in PRIVATE_NAMES:
        owner: ty.Any = entry.owner
        if entry.on_instance:
            owner = instances[entry.owner]
            if owner is None:
                continue
        if not hasattr(owner, entry.name):
            raise exception.PrivsepIncompatible(
                release=OSLO_PRIVSEP_RELEASE,
                what='%s.%s' % (getattr(entry.owner, '__name__', '?'),
                                entry.name))


def _alive(channel: ty.Any) -> bool:
    return bool(channel.running) and channel.reader_thread.is_alive()


def _watch(channel: ty.Any) -> None:
    """Wait for the reader thread's end; fail the calls still waiting."""
    channel.reader_thread.join()
    with channel.lock:
        channel.running = False
        waiting = [f for f in channel.outstanding_msgs.values()
                   if f.error is None and f.data is None]
        for future in waiting:
            future.set_exception(DaemonGone(
                'the channel to the privsep daemon closed'))
    if waiting:
        LOG.warning('The privsep daemon is gone: %d call(s) waiting for it '
                    'failed at once.', len(waiting))


#: the reader threads of watched channels
_readers: 'weakref.WeakSet[threading.Thread]' = weakref.WeakSet()
#: the process's thread exception hook before ours
_previous_excepthook = threading.excepthook


def _excepthook(args: ty.Any) -> None:
    """Keep a watched reader thread's ECONNRESET off stderr.

    Python prints the traceback of an exception that ends a thread;
    oslo.privsep's reader ends that way when its daemon is killed with a
    request unread. :func:`_watch` reports that death in one WARNING
    line, so the traceback is noise in nova-compute's output. Any other
    thread, or exception, goes to the hook that was there before.
    """
    if (args.thread in _readers
            and isinstance(args.exc_value, ConnectionResetError)):
        LOG.debug('The privsep reader thread ended: %s', args.exc_value)
        return
    _previous_excepthook(args)


def _start_watchdog(channel: ty.Any) -> None:
    global _previous_excepthook
    check(channel=channel)
    _watched.add(channel)
    _readers.add(channel.reader_thread)
    if threading.excepthook is not _excepthook:
        _previous_excepthook = threading.excepthook
        threading.excepthook = _excepthook
    threading.Thread(target=_watch, args=(channel,),
                     name='privsep-watchdog', daemon=True).start()


def _live_channel(ctx: priv_context.PrivContext) -> ty.Any:
    """The context's channel, alive and watched; a dead one replaced."""
    check(ctx=ctx)
    with _lock:
        channel = ctx.channel
        if channel is not None and not _alive(channel):
            _stop(ctx, channel, 'its channel is closed')
            channel = None
        if channel is None:
            ctx.start(_methods.get(ctx, priv_context.Method.ROOTWRAP))
            channel = ctx.channel
        if channel is not None and channel not in _watched:
            _start_watchdog(channel)
        return channel


def _stop(ctx: priv_context.PrivContext, channel: ty.Any,
          reason: str) -> None:
    """Drop a dead channel (``_lock`` held) so a new daemon starts."""
    if ctx.channel is not channel:
        return  # replaced already
    _methods[ctx] = (priv_context.Method.FORK
                     if isinstance(channel, daemon.ForkingClientChannel)
                     else priv_context.Method.ROOTWRAP)
    LOG.warning('The privsep daemon of %s is gone (%s): a new one is '
                'started.', ctx, reason)
    try:
        ctx.stop()
    except OSError as e:
        # Its half-close can fail on a socket the kernel reset; the
        # reader has ended anyway.
        LOG.debug('Closing the dead privsep channel: %s', e)
        ctx.channel = None


def call(ctx: priv_context.PrivContext, entrypoint: ty.Callable[..., ty.Any],
         *args: ty.Any, action: str, device: str,
         mgmtdev: str = '-') -> ty.Any:
    """Run a privsep entrypoint of ``ctx``; a dead daemon fails it typed.

    In the daemon itself, or with the context's client mode off (unit
    tests), the entrypoint just runs.

    :param entrypoint: an entrypoint of ``ctx``; ``args`` are its
        arguments.
    :param action: what the call does, for the message (``create``).
    :param device: the vDPA device it is for, for the message.
    :param mgmtdev: its management device, when known, for the message.
    :returns: what the entrypoint returns.
    :raises: VdpaPrivsepDied when the daemon died while the call was sent
        or in flight (the next call starts a new daemon);
        PrivsepIncompatible; what the entrypoint raises.
    """
    if not ctx.client_mode:
        return entrypoint(*args)
    for attempt in (1, 2):
        channel = _live_channel(ctx)
        try:
            return entrypoint(*args)
        except (BrokenPipeError, ConnectionResetError) as e:
            # From the send: the daemon never read this request.
            with _lock:
                _stop(ctx, channel, 'sending %s of %s: %s'
                      % (action, device, e))
            if attempt == 2:
                raise exception.VdpaPrivsepDied(
                    device=device, mgmtdev=mgmtdev, attribute=action,
                    reason='a new daemon was gone too before it read the '
                    'request (%s)' % e)
        except OSError as e:
            if channel is None or _alive(channel):
                raise
            with _lock:
                _stop(ctx, channel, '%s of %s in flight: %s'
                      % (action, device, e))
            raise exception.VdpaPrivsepDied(
                device=device, mgmtdev=mgmtdev, attribute=action,
                reason='the request was sent, the reply never came (%s)'
                % e)
    raise AssertionError('not reached')

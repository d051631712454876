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

"""devlink eswitch mode over pyroute2's generic netlink.

pyroute2 declares the devlink family (:class:`DevlinkSocket`, the
``devlinkcmd`` attribute map, ``DEVLINK_CMD_ESWITCH_GET``) but has no helper
for the eswitch: :meth:`DevlinkClient.eswitch` sends that request itself,
the way ``devlink dev eswitch show <handle>`` does. A PF whose eswitch is in
``legacy`` mode has no VF representors, so Open vSwitch cannot steer (or
offload) its VFs' traffic.

Seen on the 6.12 test bed with netdevsim: the request is answered for
``netdevsim/netdevsimN`` with ``DEVLINK_ATTR_ESWITCH_MODE`` 0 (legacy) or 1
(switchdev); an unknown handle is ENODEV. The kernel marks the command
``GENL_ADMIN_PERM``: without CAP_NET_ADMIN the answer is EPERM.

This module may import pyroute2 and the standard library, never OpenStack.
"""

import dataclasses
import errno
import os
from typing import Any, Callable

from pyroute2.netlink import devlink as pr_devlink
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink import NLM_F_REQUEST

from nova_vdpa import exception

#: ``DEVLINK_GENL_VERSION`` (pyroute2 does not define it)
DEVLINK_GENL_VERSION = 1

#: ``enum devlink_eswitch_mode`` (include/uapi/linux/devlink.h)
ESWITCH_MODE_LEGACY = 0
ESWITCH_MODE_SWITCHDEV = 1
_MODE_NAMES = {ESWITCH_MODE_LEGACY: 'legacy',
               ESWITCH_MODE_SWITCHDEV: 'switchdev'}


@dataclasses.dataclass(frozen=True)
class EswitchState:
    """What ``DEVLINK_CMD_ESWITCH_GET`` answered for one device.

    :ivar handle: ``<bus>/<device>``, ``pci/0000:08:00.0``.
    :ivar mode: ``DEVLINK_ATTR_ESWITCH_MODE``.
    :ivar inline_mode: ``DEVLINK_ATTR_ESWITCH_INLINE_MODE``, if reported.
    :ivar encap_mode: ``DEVLINK_ATTR_ESWITCH_ENCAP_MODE``, if reported.
    """

    handle: str
    mode: int
    inline_mode: int | None = None
    encap_mode: int | None = None

    @property
    def mode_name(self) -> str:
        return _MODE_NAMES.get(self.mode, 'unknown(%d)' % self.mode)

    @property
    def is_switchdev(self) -> bool:
        return self.mode == ESWITCH_MODE_SWITCHDEV


def split_handle(handle: str) -> tuple[str, str]:
    """``pci/0000:08:00.0`` -> ``('pci', '0000:08:00.0')``.

    :raises: DevlinkError when the handle has no bus.
    """
    bus, sep, dev = handle.partition('/')
    if not sep or not bus or not dev or '/' in dev:
        raise exception.DevlinkError(
            handle=handle, reason='a devlink handle is <bus>/<device>')
    return bus, dev


def _default_socket() -> Any:
    return pr_devlink.DevlinkSocket()


class DevlinkClient:
    """One devlink generic netlink socket; use from one thread at a time.

    :param socket_factory: builds an unbound socket (tests pass a fake
        kernel's socket).
    :raises: DevlinkNotAvailable when the family is absent.
    """

    def __init__(self, socket_factory: Callable[[], Any] = _default_socket
                 ) -> None:
        sock = socket_factory()
        try:
            sock.bind()
        except NetlinkError as e:
            sock.close()
            raise exception.DevlinkNotAvailable(
                handle='-', reason='binding the family failed: %s'
                % os.strerror(e.code))
        self._sock: Any = sock

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> 'DevlinkClient':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def eswitch(self, handle: str) -> EswitchState:
        """The eswitch mode of a devlink device (a NIC's PF).

        :param handle: ``<bus>/<device>``: ``pci/<PF address>``.
        :raises: DevlinkDeviceNotFound (ENODEV), EswitchNotSupported
            (EOPNOTSUPP), DevlinkPermissionDenied (EPERM), DevlinkError.
        """
        bus, dev = split_handle(handle)
        msg = pr_devlink.devlinkcmd()
        msg['cmd'] = pr_devlink.DEVLINK_CMD_ESWITCH_GET
        msg['version'] = DEVLINK_GENL_VERSION
        msg['attrs'] = [('DEVLINK_ATTR_BUS_NAME', bus),
                        ('DEVLINK_ATTR_DEV_NAME', dev)]
        try:
            replies = list(self._sock.nlm_request(
                msg, msg_type=self._sock.prid, msg_flags=NLM_F_REQUEST))
            failure = None
        except NetlinkError as e:
            failure = e
        except OSError as e:
            raise exception.DevlinkError(
                handle=handle, reason='netlink I/O error: %s' % e) from None
        if failure is not None:
            # Raised outside the handler: callers see only our error.
            raise _error(failure.code, handle)
        for reply in replies:
            mode = reply.get_attr('DEVLINK_ATTR_ESWITCH_MODE')
            if mode is not None:
                return EswitchState(
                    handle=handle, mode=mode,
                    inline_mode=reply.get_attr(
                        'DEVLINK_ATTR_ESWITCH_INLINE_MODE'),
                    encap_mode=reply.get_attr(
                        'DEVLINK_ATTR_ESWITCH_ENCAP_MODE'))
        raise exception.DevlinkError(
            handle=handle, reason='the reply carries no eswitch mode')


def _error(code: int, handle: str) -> exception.DevlinkError:
    """The one place devlink errnos become our errors."""
    reason = '%s (errno %d)' % (errno.errorcode.get(code, '?'), code)
    cls = {errno.ENODEV: exception.DevlinkDeviceNotFound,
           errno.EOPNOTSUPP: exception.EswitchNotSupported,
           errno.EPERM: exception.DevlinkPermissionDenied,
           }.get(code, exception.DevlinkError)
    return cls(handle=handle, reason=reason)


def eswitch_mode(handle: str) -> EswitchState:
    """Open a socket, read one device's eswitch, close the socket."""
    with DevlinkClient() as client:
        return client.eswitch(handle)

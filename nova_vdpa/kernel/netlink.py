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

"""Client for the kernel's ``vdpa`` generic netlink family (version 1).

The family is declared the way pyroute2 declares its own generic netlink
families (a ``genlmsg`` subclass with an ``nla_map`` and a socket that binds
the family by name); nothing here packs structures by hand. Replies are
returned as the dataclasses of :mod:`nova_vdpa.kernel.model` and every errno
the kernel answers with becomes a :mod:`nova_vdpa.exception` error in
:func:`_raise_for_errno`, the only place that maps them.

This module may import pyroute2 and the standard library, never OpenStack.
"""

import errno
import os
import socket
import struct
from typing import Any, Iterator

from pyroute2.netlink import CTRL_CMD_GETFAMILY
from pyroute2.netlink import ctrlmsg
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink import GENL_ID_CTRL
from pyroute2.netlink import genlmsg
from pyroute2.netlink.marshal import Marshal
from pyroute2.netlink import NETLINK_EXT_ACK
from pyroute2.netlink import NETLINK_GENERIC
from pyroute2.netlink import NLM_F_ACK
from pyroute2.netlink import NLM_F_ACK_TLVS
from pyroute2.netlink import NLM_F_DUMP
from pyroute2.netlink import NLM_F_MULTI
from pyroute2.netlink import NLM_F_REQUEST
from pyroute2.netlink import NLMSG_DONE
from pyroute2.netlink import NLMSG_ERROR
from pyroute2.netlink import SOL_NETLINK

from nova_vdpa import exception
from nova_vdpa.kernel import model
from nova_vdpa.kernel import validate

GENL_NAME = 'vdpa'
GENL_VERSION = 1
#: what is missing when the family is not registered
FAMILY_TEXT = "the generic netlink family 'vdpa'"

# Commands (include/uapi/linux/vdpa.h). Replies carry the NEW numbers:
# management device replies say MGMTDEV_NEW, device replies DEV_NEW.
VDPA_CMD_UNSPEC = 0
VDPA_CMD_MGMTDEV_NEW = 1
VDPA_CMD_MGMTDEV_GET = 2
VDPA_CMD_DEV_NEW = 3
VDPA_CMD_DEV_DEL = 4
VDPA_CMD_DEV_GET = 5
VDPA_CMD_DEV_CONFIG_GET = 6
VDPA_CMD_DEV_VSTATS_GET = 7
VDPA_CMD_DEV_ATTR_SET = 8

#: seconds a vdpa socket waits for each part of an answer
RECV_TIMEOUT = 30.0

_COMMAND_NAMES = {
    VDPA_CMD_MGMTDEV_GET: 'management device get',
    VDPA_CMD_DEV_NEW: 'device create',
    VDPA_CMD_DEV_DEL: 'device delete',
    VDPA_CMD_DEV_GET: 'device get',
    VDPA_CMD_DEV_CONFIG_GET: 'device config get',
    VDPA_CMD_DEV_VSTATS_GET: 'vendor queue stats get',
}


class vdpamsg(genlmsg):
    """A message of the vdpa family; attribute numbers follow the list."""

    prefix = 'VDPA_ATTR_'
    nla_map = (
        # 0 is both UNSPEC and PAD: u64 attributes may be preceded by it.
        ('VDPA_ATTR_PAD', 'none'),
        ('VDPA_ATTR_MGMTDEV_BUS_NAME', 'asciiz'),
        ('VDPA_ATTR_MGMTDEV_DEV_NAME', 'asciiz'),
        ('VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES', 'uint64'),
        ('VDPA_ATTR_DEV_NAME', 'asciiz'),
        ('VDPA_ATTR_DEV_ID', 'uint32'),
        ('VDPA_ATTR_DEV_VENDOR_ID', 'uint32'),
        ('VDPA_ATTR_DEV_MAX_VQS', 'uint32'),
        ('VDPA_ATTR_DEV_MAX_VQ_SIZE', 'uint16'),
        ('VDPA_ATTR_DEV_MIN_VQ_SIZE', 'uint16'),
        ('VDPA_ATTR_DEV_NET_CFG_MACADDR', 'l2addr'),
        # The header says u8; the kernel puts a u16 (nla_put_u16).
        ('VDPA_ATTR_DEV_NET_STATUS', 'uint16'),
        ('VDPA_ATTR_DEV_NET_CFG_MAX_VQP', 'uint16'),
        ('VDPA_ATTR_DEV_NET_CFG_MTU', 'uint16'),
        ('VDPA_ATTR_DEV_NEGOTIATED_FEATURES', 'uint64'),
        ('VDPA_ATTR_DEV_MGMTDEV_MAX_VQS', 'uint32'),
        ('VDPA_ATTR_DEV_SUPPORTED_FEATURES', 'uint64'),
        ('VDPA_ATTR_DEV_QUEUE_INDEX', 'uint32'),
        ('VDPA_ATTR_DEV_VENDOR_ATTR_NAME', 'asciiz'),
        ('VDPA_ATTR_DEV_VENDOR_ATTR_VALUE', 'uint64'),
        ('VDPA_ATTR_DEV_FEATURES', 'uint64'),
        # 21: the device's features on 6.1 only (VDPA_ATTR_VDPA_DEV_
        # SUPPORTED_FEATURES, a net device attribute), block capacity from
        # 6.9 on (block devices only); config parsing tells them apart.
        ('VDPA_ATTR_21', 'uint64'),
    )


#: a message of the family as the socket received it, not decoded yet:
#: ``(buffer, offset, length)``; :func:`decode_attrs` or
#: :func:`decode_reply` read it.
RawReply = tuple[bytes, int, int]

_NLMSG_LEN = struct.Struct('=I').unpack_from
_NLA_HEADER = struct.Struct('=HH').unpack_from
_NONE, _ASCIIZ, _L2ADDR = 0, 1, 2
_INTEGERS = {'uint8': '=B', 'uint16': '=H', 'uint32': '=I', 'uint64': '=Q'}


def _format(fmt: str) -> tuple[int, Any]:
    """An integer format's (size, precompiled unpacker); (0, kind) else."""
    if fmt in _INTEGERS:
        packer = struct.Struct(_INTEGERS[fmt])
        return packer.size, packer.unpack_from
    return 0, {'none': _NONE, 'asciiz': _ASCIIZ, 'l2addr': _L2ADDR}[fmt]


#: attribute number -> (name, integer size or 0, unpacker or kind), from
#: :class:`vdpamsg`'s map
_ATTRIBUTES = tuple((name,) + _format(fmt) for name, fmt in vdpamsg.nla_map)
#: nla_type bits that are flags, not the attribute number
_NLA_TYPE_MASK = 0x3fff


def _decode(data: bytes, offset: int, length: int | None,
            into: dict[str, Any] | list[tuple[str, Any]]) -> None:
    """Read one message's attributes into a dict, or a list of pairs.

    One loop for both. Per attribute this is most of what a dump costs at
    every periodic update, so it makes no Python call and no object but
    the value (integers by precompiled ``struct`` unpackers, strings cut
    at their NUL and decoded once).
    """
    if length is None:
        length = _NLMSG_LEN(data, offset)[0]
    by_name = into if isinstance(into, dict) else None
    pairs = into if isinstance(into, list) else None
    attributes, known = _ATTRIBUTES, len(_ATTRIBUTES)
    end = offset + length
    pos = offset + 20  # nlmsghdr (16) and genlmsghdr (4)
    while pos + 4 <= end:
        nla_len, nla_type = _NLA_HEADER(data, pos)
        start, stop = pos + 4, pos + nla_len
        if nla_len < 4 or stop > end:
            break
        nla_type &= _NLA_TYPE_MASK
        if nla_type < known:
            name, size, fmt = attributes[nla_type]
            if size:
                value = fmt(data, start)[0] if nla_len - 4 >= size else None
            elif fmt == _ASCIIZ:
                nul = data.find(0, start, stop)
                value = data[start:stop if nul < 0 else nul].decode(
                    'utf-8', 'surrogateescape')
            elif fmt == _L2ADDR:
                value = data[start:stop].hex(':')
            else:
                value = None
            if by_name is not None:
                by_name[name] = value
            elif pairs is not None:
                pairs.append((name, value))
        pos += (nla_len + 3) & ~3


def decode_attrs(data: bytes, offset: int = 0,
                 length: int | None = None) -> dict[str, Any]:
    """One vdpa family message's attributes by name.

    What the models are built from. An attribute that comes twice keeps
    its last value; :func:`decode_reply` keeps them all, in order.
    Attributes this map does not know are skipped.
    """
    attrs: dict[str, Any] = {}
    _decode(data, offset, length, attrs)
    return attrs


def decode_reply(data: bytes, offset: int = 0,
                 length: int | None = None) -> dict[str, Any]:
    """One vdpa family message: ``{'cmd': n, 'attrs': [(name, value)]}``.

    The attributes are read with :class:`vdpamsg`'s own map and formats,
    in order, repeated ones included (vendor statistics).
    Why not ``vdpamsg(data).decode()``: pyroute2 builds an object per
    attribute, which made a 1,024 management device dump cost 100 ms of
    Python, ten times this; the family's replies are flat (no nested
    attributes), so a loop over the attribute headers is all it takes.
    Attributes this map does not know are skipped.
    """
    attrs: list[tuple[str, Any]] = []
    _decode(data, offset, length, attrs)
    return {'cmd': data[offset + 16], 'attrs': attrs}


class VdpaSocket:
    """A netlink socket bound to the vdpa family, one request at a time.

    Requests are pyroute2's messages (:class:`vdpamsg`, ``ctrlmsg``), and
    so are errors with their extended acks (pyroute2's ``Marshal``);
    replies of the family are returned as received (:data:`RawReply`),
    for the client to decode into what it builds. Only sending, receiving
    and matching the sequence number are done here.

    Why not pyroute2's own ``GenericNetlinkSocket``: from 0.9 its
    synchronous API runs an asyncio event loop for every request, which in
    the test bed (TCG) cost 6 ms per DEV_GET against 1.5 ms this way, and
    nova-compute asks several per port.

    A request whose answer does not come within ``recv_timeout`` seconds
    raises ``TimeoutError`` (the socket's own timeout: pyroute2's sockets
    are not used here). That bounds a reply lost or late; it cannot bound
    a request asleep behind the kernel's vdpa lock, which sleeps in
    ``send`` itself: that is :mod:`nova_vdpa.kernel.worker`'s job.

    :param ext_ack: ask the kernel to explain policy errors (MTU < 68, bad
        MAC) in extended acks.
    :param recv_timeout: seconds to wait for each part of an answer.
    """

    #: receive buffer; the kernel fills a dump skb up to 32 KiB
    RECV_SIZE = 65536

    def __init__(self, ext_ack: bool = True,
                 recv_timeout: float = RECV_TIMEOUT) -> None:
        self.recv_timeout = recv_timeout
        self._sock = socket.socket(socket.AF_NETLINK,
                                   socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   NETLINK_GENERIC)
        try:
            self._sock.settimeout(recv_timeout)
            self._sock.bind((0, 0))
            if ext_ack:
                self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        except OSError:
            self._sock.close()
            raise
        self._seq = 0
        self.prid: int | None = None
        self._marshal = Marshal()
        self._marshal.msg_map[GENL_ID_CTRL] = ctrlmsg

    def bind(self) -> None:
        """Resolve the family's id (``CTRL_CMD_GETFAMILY``).

        :raises: NetlinkError (ENOENT when the family is not registered)
        """
        msg = ctrlmsg()
        msg['cmd'] = CTRL_CMD_GETFAMILY
        msg['version'] = 1
        msg['attrs'] = [('CTRL_ATTR_FAMILY_NAME', GENL_NAME)]
        [reply] = [r for r in self.nlm_request(msg, GENL_ID_CTRL,
                                               NLM_F_REQUEST | NLM_F_ACK)
                   if isinstance(r, ctrlmsg)]
        self.prid = reply.get_attr('CTRL_ATTR_FAMILY_ID')

    def close(self) -> None:
        self._sock.close()

    def nlm_request(self, msg: genlmsg, msg_type: int,
                    msg_flags: int) -> list[Any]:
        """Send ``msg``; its replies, up to the ack or the end of the dump.

        The family's replies are :data:`RawReply` references into the
        received buffers, others pyroute2's decoded messages.

        :raises: NetlinkError with the kernel's errno and extended ack;
            TimeoutError when an answer does not come in time; OSError for
            a socket error or a truncated reply.
        """
        self._seq = self._seq % 0x7fffffff + 1
        seq = self._seq
        msg['header']['type'] = msg_type
        msg['header']['flags'] = msg_flags
        msg['header']['sequence_number'] = seq
        msg['header']['pid'] = 0
        msg.reset()
        msg.encode()
        self._sock.send(msg.data)
        dump = msg_flags & NLM_F_DUMP == NLM_F_DUMP
        replies: list[Any] = []
        while True:
            data, _, flags, _ = self._sock.recvmsg(self.RECV_SIZE)
            if flags & socket.MSG_TRUNC:
                raise OSError(errno.EMSGSIZE, 'netlink reply longer than '
                              '%d bytes' % self.RECV_SIZE)
            offset = 0
            while offset + 16 <= len(data):
                length, mtype, mflags, mseq = struct.unpack_from(
                    '=IHHI', data, offset)
                if length < 16:
                    raise OSError(errno.EBADMSG, 'netlink message of %d '
                                  'bytes' % length)
                at, offset = offset, offset + ((length + 3) & ~3)
                if mseq != seq:
                    continue  # a late reply to an abandoned request
                if mtype == self.prid:
                    replies.append((data, at, length))
                elif mtype == NLMSG_DONE and not mflags & NLM_F_ACK_TLVS:
                    # A dump that failed after its first part says so here.
                    code = struct.unpack_from('=i', data, at + 16)[0] \
                        if length >= 20 else 0
                    if code:
                        raise NetlinkError(abs(code))
                    return replies
                else:
                    # Errors with their extended ack, acks, the control
                    # family's replies: pyroute2 decodes those.
                    [reply] = self._marshal.parse(data[at:at + length])
                    if reply['header'].get('error') is not None:
                        raise reply['header']['error']
                    if mtype in (NLMSG_ERROR, NLMSG_DONE):
                        return replies  # the ack, or the end of a dump
                    replies.append(reply)
                if not dump and not msg_flags & NLM_F_ACK and \
                        not mflags & NLM_F_MULTI:
                    return replies


def _raise_for_errno(code: int, command: int, ctx: dict[str, str],
                     extack: str | None) -> None:
    """Turn a kernel errno into the matching typed error (the one place).

    :param code: the positive errno of the kernel's answer.
    :param command: the VDPA_CMD_* that failed.
    :param ctx: ``device``, ``mgmtdev`` and ``attribute`` of the request.
    :param extack: the kernel's extended ack text, if any.
    :raises: a :class:`nova_vdpa.exception.VdpaKernelError` subclass.
    """
    reason = '%s (errno %d%s)' % (
        (extack or '').strip() or _strerror(code), code,
        ', %s' % _COMMAND_NAMES.get(command, 'command %d' % command))
    kw = dict(ctx, reason=reason)
    if code == errno.ENOENT:
        # Only genetlink itself answers ENOENT: no family with that id.
        raise exception.VdpaNotLoaded(**dict(kw, attribute=FAMILY_TEXT))
    if code == errno.ENODEV:
        if command in (VDPA_CMD_MGMTDEV_GET, VDPA_CMD_DEV_NEW):
            raise exception.VdpaManagementDeviceNotFound(**kw)
        raise exception.VdpaDeviceNotFound(**kw)
    cls = {
        errno.EPERM: exception.VdpaPermissionDenied,
        errno.EACCES: exception.VdpaPermissionDenied,
        errno.EEXIST: exception.VdpaDeviceExists,
        errno.EOPNOTSUPP: exception.VdpaAttributeNotSupported,
        errno.ENOSPC: exception.VdpaNoSpace,
        errno.EINVAL: exception.VdpaInvalidRequest,
        errno.ERANGE: exception.VdpaInvalidRequest,
        # CONFIG_GET (5.16-6.0) and VSTATS_GET before FEATURES_OK.
        errno.EAGAIN: exception.VdpaFeaturesNotNegotiated,
    }.get(code, exception.VdpaKernelError)
    raise cls(**kw)


def _strerror(code: int) -> str:
    return os.strerror(code)


def _default_socket() -> VdpaSocket:
    # ext_ack: the kernel explains policy errors (MTU < 68, bad MAC) only
    # to sockets that ask for extended acks.
    return VdpaSocket(ext_ack=True)


class VdpaClient:
    """Synchronous client of the vdpa family.

    One client owns one netlink socket; use it from one thread at a time
    (pyroute2 sockets are not shared between threads).

    :param socket_factory: builds an unbound socket; tests pass a fake
        kernel's socket here.
    :raises: :class:`~nova_vdpa.exception.VdpaNotLoaded` when the family
        is absent.
    """

    def __init__(self, socket_factory: Any = _default_socket) -> None:
        self._socket_factory = socket_factory
        self._sock: Any = self._bind(dict(device='-', mgmtdev='-'))

    def _bind(self, ctx: dict[str, str]) -> Any:
        """A socket bound to the family; ``ctx`` names the request's device.

        :raises: VdpaNotLoaded, VdpaKernelError
        """
        sock = self._socket_factory()
        try:
            sock.bind()
        except NetlinkError as e:
            sock.close()
            kw = dict(ctx, attribute=FAMILY_TEXT)
            if e.code == errno.ENOENT:
                raise exception.VdpaNotLoaded(**kw)
            raise exception.VdpaKernelError(
                reason='cannot bind the vdpa family: %s' % e, **kw)
        except OSError as e:
            sock.close()
            raise exception.VdpaKernelError(
                reason='cannot bind the vdpa family: %s' % e,
                **dict(ctx, attribute=FAMILY_TEXT))
        return sock

    def close(self) -> None:
        """Close the netlink socket."""
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> 'VdpaClient':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing
    def _request(self, command: int, attrs: list[tuple[str, Any]],
                 dump: bool, ctx: dict[str, str]) -> Iterator[Any]:
        answer = self._send(command, attrs, dump, ctx)
        if isinstance(answer, tuple) and answer[0] == errno.ENOENT:
            # genetlink answers ENOENT for a family id it does not know:
            # the vdpa modules were reloaded (the family got a new id) or
            # unloaded since this socket bound. The request never reached
            # vdpa, so binding again and resending once is safe; a family
            # that is gone raises VdpaNotLoaded from _bind.
            self._sock.close()
            self._sock = None  # bound again by _send, or VdpaNotLoaded
            answer = self._send(command, attrs, dump, ctx)
        if isinstance(answer, tuple):
            # Raised outside the handler: callers see only our error.
            _raise_for_errno(answer[0], command, ctx, answer[1])
        return iter(answer)

    def _send(self, command: int, attrs: list[tuple[str, Any]], dump: bool,
              ctx: dict[str, str]) -> list[Any] | tuple[int, str | None]:
        """Send one request: the replies, or (errno, extack) on failure."""
        if self._sock is None:
            self._sock = self._bind(ctx)
        msg = vdpamsg()
        msg['cmd'] = command
        msg['version'] = GENL_VERSION
        msg['attrs'] = attrs
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        try:
            # Materialise inside the try: errors surface while reading.
            return list(self._sock.nlm_request(
                msg, msg_type=self._sock.prid, msg_flags=flags))
        except NetlinkError as e:
            extack = e.args[1] if len(e.args) > 1 else None
            return (e.code, None if extack == _strerror(e.code) else extack)
        except TimeoutError:
            # The one place a socket timeout becomes ours. The late answer
            # is skipped by its sequence number if it ever comes.
            raise exception.VdpaKernelTimeout(
                timeout=getattr(self._sock, 'recv_timeout', RECV_TIMEOUT),
                **dict(ctx, attribute='%s (%s)' % (
                    _COMMAND_NAMES.get(command, 'command %d' % command),
                    ctx.get('attribute', '-'))))
        except OSError as e:
            raise exception.VdpaKernelError(
                reason='netlink I/O error: %s' % e, **ctx) from None

    @staticmethod
    def _mgmtdev_attrs(mgmtdev: str) -> list[tuple[str, Any]]:
        bus, name = model.split_mgmtdev(mgmtdev)
        attrs: list[tuple[str, Any]] = []
        # The kernel matches a handle with a bus only against management
        # devices that have one, and a bare one only against those without.
        if bus is not None:
            attrs.append(('VDPA_ATTR_MGMTDEV_BUS_NAME', bus))
        attrs.append(('VDPA_ATTR_MGMTDEV_DEV_NAME', name))
        return attrs

    # --------------------------------------------------- management devices
    def list_management_devices(self) -> list[model.ManagementDevice]:
        """All management devices (``vdpa mgmtdev show``)."""
        ctx = dict(device='-', mgmtdev='*', attribute='-')
        return [model.ManagementDevice.from_attrs(decode_attrs(*m))
                for m in self._request(VDPA_CMD_MGMTDEV_GET, [], True, ctx)]

    def get_management_device(self, mgmtdev: str) -> model.ManagementDevice:
        """One management device by handle (``pci/0000:08:00.2``).

        :raises: VdpaManagementDeviceNotFound, VdpaInvalidArgument
        """
        validate.mgmtdev_handle(mgmtdev)
        ctx = dict(device='-', mgmtdev=mgmtdev,
                   attribute='VDPA_ATTR_MGMTDEV_DEV_NAME')
        replies = list(self._request(VDPA_CMD_MGMTDEV_GET,
                                     self._mgmtdev_attrs(mgmtdev), False,
                                     ctx))
        return model.ManagementDevice.from_attrs(decode_attrs(*replies[0]))

    # -------------------------------------------------------------- devices
    def list_devices(self) -> list[model.VdpaDevice]:
        """All user-created vDPA devices (``vdpa dev show``)."""
        ctx = dict(device='*', mgmtdev='-', attribute='-')
        return [model.VdpaDevice.from_attrs(decode_attrs(*m))
                for m in self._request(VDPA_CMD_DEV_GET, [], True, ctx)]

    def get_device(self, name: str) -> model.VdpaDevice:
        """One vDPA device by name.

        :param name: any name the kernel reports (see
            :func:`nova_vdpa.kernel.validate.existing_device_name`).
        :raises: VdpaDeviceNotFound, VdpaInvalidArgument
        """
        validate.existing_device_name(name)
        ctx = dict(device=name, mgmtdev='-', attribute='VDPA_ATTR_DEV_NAME')
        replies = list(self._request(
            VDPA_CMD_DEV_GET, [('VDPA_ATTR_DEV_NAME', name)], False, ctx))
        return model.VdpaDevice.from_attrs(decode_attrs(*replies[0]))

    def list_configs(self) -> list[model.DeviceConfig]:
        """The virtio config of every device (``vdpa dev config show``)."""
        ctx = dict(device='*', mgmtdev='-', attribute='-')
        return [model.DeviceConfig.from_attrs(decode_attrs(*m))
                for m in self._request(VDPA_CMD_DEV_CONFIG_GET, [], True,
                                       ctx)]

    def get_config(self, name: str) -> model.DeviceConfig:
        """The virtio config of one device.

        :raises: VdpaDeviceNotFound, VdpaInvalidArgument
        """
        validate.existing_device_name(name)
        ctx = dict(device=name, mgmtdev='-', attribute='VDPA_ATTR_DEV_NAME')
        replies = list(self._request(VDPA_CMD_DEV_CONFIG_GET,
                                     [('VDPA_ATTR_DEV_NAME', name)], False,
                                     ctx))
        return model.DeviceConfig.from_attrs(decode_attrs(*replies[0]))

    def get_vendor_stats(self, name: str,
                         queue_index: int) -> model.VendorQueueStats:
        """Vendor statistics of one virtqueue (needs CAP_NET_ADMIN).

        vdpa_sim_net reports packet counters (queue 0 rx, 1 tx, 2 the
        control queue); mlx5_vdpa descriptor counts. They are readable only
        while the device has negotiated features (a VMM or virtio_vdpa
        started it) and are not zeroed by a device reset.

        :raises: VdpaDeviceNotFound, VdpaAttributeNotSupported (the driver
            has no vendor statistics), VdpaFeaturesNotNegotiated (EAGAIN:
            nothing started the device yet), VdpaKernelError
        """
        validate.existing_device_name(name)
        validate.queue_index(queue_index, name)
        ctx = dict(device=name, mgmtdev='-',
                   attribute='VDPA_ATTR_DEV_QUEUE_INDEX')
        replies = list(self._request(
            VDPA_CMD_DEV_VSTATS_GET,
            [('VDPA_ATTR_DEV_NAME', name),
             ('VDPA_ATTR_DEV_QUEUE_INDEX', queue_index)], False, ctx))
        return model.VendorQueueStats.from_attrs(
            decode_reply(*replies[0])['attrs'])

    def get_traffic(self, name: str) -> model.DeviceTraffic:
        """The device's packet counters, summed over all its virtqueues.

        One VSTATS_GET per virtqueue (``max_vqs`` of the device).

        :raises: as :meth:`get_vendor_stats`.
        """
        queues = self.get_device(name).max_vqs or 0
        return model.DeviceTraffic.from_queues(
            name, [self.get_vendor_stats(name, index)
                   for index in range(queues)])

    def create_device(self, name: str, mgmtdev: str, mac: str | None = None,
                      mtu: int | None = None,
                      max_vq_pairs: int | None = None,
                      device_features: int | None = None) -> None:
        """Create a vDPA device (``vdpa dev add``).

        Every argument is checked before anything is sent. The kernel
        probes the new device synchronously: when this returns, it is bound
        to whichever bus driver autoprobe picked (see
        :meth:`nova_vdpa.kernel.sysfs.VdpaSysfs.bind`).

        :param name: the new device's name (safe charset, <= 63 chars).
        :param mgmtdev: management device handle, ``bus/name`` or ``name``.
        :param mac: unicast MAC ``02:00:00:00:00:01``.
        :param mtu: 68-65535.
        :param max_vq_pairs: >= 1; not every management device takes it.
        :param device_features: virtio feature bits to provision.
        :raises: VdpaInvalidArgument, VdpaDeviceExists,
            VdpaManagementDeviceNotFound, VdpaAttributeNotSupported,
            VdpaNoSpace, VdpaPermissionDenied, VdpaInvalidRequest
        """
        validate.create_args(name, mgmtdev, mac, mtu, max_vq_pairs,
                             device_features)
        attrs = [('VDPA_ATTR_DEV_NAME', name)] + self._mgmtdev_attrs(mgmtdev)
        optional = []
        if mac is not None:
            attrs.append(('VDPA_ATTR_DEV_NET_CFG_MACADDR', mac.lower()))
            optional.append('VDPA_ATTR_DEV_NET_CFG_MACADDR')
        if mtu is not None:
            attrs.append(('VDPA_ATTR_DEV_NET_CFG_MTU', mtu))
            optional.append('VDPA_ATTR_DEV_NET_CFG_MTU')
        if max_vq_pairs is not None:
            attrs.append(('VDPA_ATTR_DEV_NET_CFG_MAX_VQP', max_vq_pairs))
            optional.append('VDPA_ATTR_DEV_NET_CFG_MAX_VQP')
        if device_features is not None:
            attrs.append(('VDPA_ATTR_DEV_FEATURES', device_features))
            optional.append('VDPA_ATTR_DEV_FEATURES')
        ctx = dict(device=name, mgmtdev=mgmtdev,
                   attribute=', '.join(optional) or 'VDPA_ATTR_DEV_NAME')
        list(self._request(VDPA_CMD_DEV_NEW, attrs, False, ctx))

    def delete_device(self, name: str) -> None:
        """Delete a vDPA device (``vdpa dev del``), unconditionally.

        Beware: the kernel blocks this call until every process holding
        the device's vhost-vdpa character device closes it. Callers use
        :func:`nova_vdpa.kernel.lifecycle.delete_device`, which checks
        first and never waits without a deadline.

        :raises: VdpaDeviceNotFound, VdpaPermissionDenied,
            VdpaInvalidArgument
        """
        validate.existing_device_name(name)
        ctx = dict(device=name, mgmtdev='-', attribute='VDPA_ATTR_DEV_NAME')
        list(self._request(VDPA_CMD_DEV_DEL, [('VDPA_ATTR_DEV_NAME', name)],
                           False, ctx))

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

"""Checks on every value before it reaches the kernel or a sysfs path.

A device name becomes a directory under ``/sys/bus/vdpa/devices``; the
checks here make sure no name can leave that directory. They run in the
unprivileged caller, before any privsep escalation, and again in the
kernel client itself. Only the standard library is imported here.

Two rules for device names:

* :func:`device_name`, for names nova-vdpa *creates*: a strict charset, so
  our names are safe everywhere (paths, XML, logs, iproute2's output);
* :func:`existing_device_name`, for names we *read, bind or delete*: any
  name the kernel reports, since iproute2 and the kernel accept names our
  creation rule forbids (``.``, ``:``, ``@``, any length). Only what cannot
  be one sysfs path component is refused: empty, NUL, ``/``, ``.``, ``..``.

Every pattern matches the whole string (``re.fullmatch``): ``$`` alone
would let a trailing newline through.
"""

import re

from nova_vdpa import exception
from nova_vdpa.kernel import model

#: longest device name we create (the kernel has no limit of its own)
MAX_NAME_LEN = 63
MTU_MIN = 68
MTU_MAX = 65535
#: VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX
MAX_VQ_PAIRS = 0x8000
#: longest wait for a kernel operation that may block, in seconds
MAX_TIMEOUT = 300

# Letters, digits, '_' and '-', starting with a letter or digit: no '/',
# no '.', so neither 'a/../b' nor '..' can be formed.
_NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]{0,%d}' % (MAX_NAME_LEN - 1))
_BUS_RE = re.compile(r'[a-z0-9][a-z0-9_]{0,31}')
# PCI addresses (0000:08:00.2), auxiliary devices (mlx5_core.sf.3),
# simulators (vdpasim_net).
_MGMT_NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}')
_MAC_RE = re.compile(r'[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}')
# domain:bus:slot.function as sysfs spells it (lowercase hex; a domain
# may have more than four digits, e.g. behind Intel VMD).
_PCI_RE = re.compile(r'[0-9a-f]{4,8}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]')


def _bad(device: str, attribute: str, reason: str,
         mgmtdev: str = '-') -> exception.VdpaInvalidArgument:
    return exception.VdpaInvalidArgument(
        device=device, mgmtdev=mgmtdev, attribute=attribute, reason=reason)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def device_name(name: str) -> None:
    """Check the name of a device we are about to create.

    :raises: VdpaInvalidArgument unless 1-63 letters, digits, ``_``, ``-``.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise _bad(repr(name), 'name',
                   'a new device name is 1-%d letters, digits, "_" or "-", '
                   'starting with a letter or digit' % MAX_NAME_LEN)


def existing_device_name(name: str) -> None:
    """Check the name of a device to read, bind or delete.

    Any name the kernel may report passes, except what cannot be a single
    sysfs path component.

    :raises: VdpaInvalidArgument for a non-string, an empty name, NUL,
        ``/``, ``.`` or ``..``.
    """
    if (not isinstance(name, str) or not name or '\0' in name
            or '/' in name or name in ('.', '..')):
        raise _bad(repr(name), 'name',
                   'a device name is a non-empty string without NUL or '
                   '"/", and not "." or ".."')


def timeout(value: float, device: str = '-') -> None:
    """:raises: VdpaInvalidArgument unless 0 < ``value`` <= 300 seconds."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 < value <= MAX_TIMEOUT):
        raise _bad(device, 'timeout', 'timeout %r is not in (0, %d] '
                   'seconds' % (value, MAX_TIMEOUT))


#: the deletion deadline follows the common rule
delete_timeout = timeout


def mgmtdev_handle(handle: str, device: str = '-') -> None:
    """:raises: VdpaInvalidArgument unless ``handle`` is ``[bus/]name``."""
    if not isinstance(handle, str):
        raise _bad(device, 'mgmtdev', 'not a string', mgmtdev=repr(handle))
    bus, name = model.split_mgmtdev(handle)
    if ((bus is not None and not _BUS_RE.fullmatch(bus))
            or not _MGMT_NAME_RE.fullmatch(name) or name in ('.', '..')):
        raise _bad(device, 'mgmtdev',
                   'a management device is "bus/name" or "name"',
                   mgmtdev=repr(handle))


def mac_problem(value: object) -> str | None:
    """Why ``value`` is not a usable unicast MAC, or None if it is one."""
    if not isinstance(value, str) or not _MAC_RE.fullmatch(value):
        return 'MAC %r is not six hex octets separated by ":"' % (value,)
    if int(value[:2], 16) & 1:
        return 'MAC %s is a multicast address' % value
    if value.replace(':', '').strip('0') == '':
        return 'MAC 00:00:00:00:00:00 is not usable'
    return None


def mac(value: str, device: str = '-') -> None:
    """:raises: VdpaInvalidArgument unless a unicast ``xx:xx:..`` MAC."""
    problem = mac_problem(value)
    if problem:
        raise _bad(device, 'mac', problem)


def mtu(value: int, device: str = '-') -> None:
    """:raises: VdpaInvalidArgument unless 68 <= ``value`` <= 65535."""
    if not _is_int(value) or not MTU_MIN <= value <= MTU_MAX:
        raise _bad(device, 'mtu', 'MTU %r is outside %d-%d'
                   % (value, MTU_MIN, MTU_MAX))


def max_vq_pairs(value: int, device: str = '-') -> None:
    """:raises: VdpaInvalidArgument unless 1 <= ``value`` <= 0x8000."""
    if not _is_int(value) or not 1 <= value <= MAX_VQ_PAIRS:
        raise _bad(device, 'max_vq_pairs', 'queue pairs %r is outside '
                   '1-%d' % (value, MAX_VQ_PAIRS))


def queue_index(value: int, device: str = '-') -> None:
    """:raises: VdpaInvalidArgument unless a u32 queue index."""
    if not _is_int(value) or not 0 <= value < 1 << 32:
        raise _bad(device, 'queue_index', 'queue index %r is not a u32'
                   % (value,))


def pci_address(address: str) -> None:
    """:raises: VdpaInvalidArgument unless ``0000:08:00.2`` (lowercase)."""
    if not isinstance(address, str) or not _PCI_RE.fullmatch(address):
        raise _bad(repr(address), 'pci', 'a PCI address is '
                   'domain:bus:slot.function in lowercase hex, as sysfs '
                   'spells it (0000:08:00.2)')


def create_args(name: str, mgmtdev: str, mac_: str | None, mtu_: int | None,
                max_vqp: int | None, features: int | None) -> None:
    """Check everything a device creation sends.

    :raises: VdpaInvalidArgument naming the first bad value.
    """
    device_name(name)
    mgmtdev_handle(mgmtdev, name)
    if mac_ is not None:
        mac(mac_, name)
    if mtu_ is not None:
        mtu(mtu_, name)
    if max_vqp is not None:
        max_vq_pairs(max_vqp, name)
    if features is not None:
        if not _is_int(features) or not 0 <= features < 1 << 64:
            raise _bad(name, 'device_features',
                       'features %r are not a u64' % (features,), mgmtdev)
        # The kernel refuses (EINVAL) a config value whose feature bit the
        # provisioned features leave out.
        for given, bit, what in ((mac_, model.F_MAC, 'MAC'),
                                 (mtu_, model.F_MTU, 'MTU'),
                                 (max_vqp, model.F_MQ, 'MQ')):
            if given is not None and not features & bit:
                raise _bad(name, 'device_features',
                           'a %s is given but the features lack F_%s'
                           % (what, what), mgmtdev)


def is_pci_address(value: object) -> bool:
    """Whether ``value`` is a PCI address as sysfs spells it.

    The one rule for PCI addresses (the allocator's VF addresses too):
    the whole string, so ``"0000:08:00.2\\n"`` is not one.
    """
    return isinstance(value, str) and _PCI_RE.fullmatch(value) is not None

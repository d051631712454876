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
"""

import re

from nova_vdpa import exception
from nova_vdpa.kernel import model

#: longest device name accepted (the kernel has no limit of its own)
MAX_NAME_LEN = 63
MTU_MIN = 68
MTU_MAX = 65535
#: VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX
MAX_VQ_PAIRS = 0x8000
#: longest wait for a deletion, in seconds
MAX_DELETE_TIMEOUT = 300

# Letters, digits, '_' and '-', starting with a letter or digit: no '/',
# no '.', so neither 'a/../b' nor '..' can be formed.
_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]{0,%d}$'
                      % (MAX_NAME_LEN - 1))
_BUS_RE = re.compile(r'^[a-z0-9][a-z0-9_]{0,31}$')
# PCI addresses (0000:08:00.2), auxiliary devices (mlx5_core.sf.3),
# simulators (vdpasim_net).
_MGMT_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$')
_MAC_RE = re.compile(r'^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$')


def _bad(device: str, attribute: str, reason: str,
         mgmtdev: str = '-') -> exception.VdpaInvalidArgument:
    return exception.VdpaInvalidArgument(
        device=device, mgmtdev=mgmtdev, attribute=attribute, reason=reason)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def device_name(name: str) -> None:
    """Check a device name; :raises: VdpaInvalidArgument if unsafe."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _bad(repr(name), 'name',
                   'a device name is 1-%d letters, digits, "_" or "-", '
                   'starting with a letter or digit' % MAX_NAME_LEN)


def delete_timeout(value: float, device: str = '-') -> None:
    """:raises: VdpaInvalidArgument unless 0 < ``value`` <= 300 seconds."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 < value <= MAX_DELETE_TIMEOUT):
        raise _bad(device, 'timeout', 'deletion timeout %r is not in '
                   '(0, %d] seconds' % (value, MAX_DELETE_TIMEOUT))


def mgmtdev_handle(handle: str) -> None:
    """:raises: VdpaInvalidArgument unless ``handle`` is ``[bus/]name``."""
    if not isinstance(handle, str):
        raise _bad('-', 'mgmtdev', 'not a string', mgmtdev=repr(handle))
    bus, name = model.split_mgmtdev(handle)
    if ((bus is not None and not _BUS_RE.match(bus))
            or not _MGMT_NAME_RE.match(name) or name in ('.', '..')):
        raise _bad('-', 'mgmtdev',
                   'a management device is "bus/name" or "name"',
                   mgmtdev=repr(handle))


def mac(value: str, device: str = '-') -> None:
    """:raises: VdpaInvalidArgument unless a unicast ``xx:xx:..`` MAC."""
    if not isinstance(value, str) or not _MAC_RE.match(value):
        raise _bad(device, 'mac', 'MAC %r is not six hex octets separated '
                   'by ":"' % (value,))
    first = int(value[:2], 16)
    if first & 1:
        raise _bad(device, 'mac', 'MAC %s is a multicast address' % value)
    if value.replace(':', '').strip('0') == '':
        raise _bad(device, 'mac', 'MAC 00:00:00:00:00:00 is not usable')


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
    """:raises: VdpaInvalidArgument unless a safe PCI address path part."""
    if (not isinstance(address, str) or '/' in address
            or address in ('.', '..')
            or not address.replace(':', '').replace('.', '').isalnum()):
        raise _bad('-', 'pci', 'bad PCI address %r' % (address,))


def create_args(name: str, mgmtdev: str, mac_: str | None, mtu_: int | None,
                max_vqp: int | None, features: int | None) -> None:
    """Check everything a device creation sends.

    :raises: VdpaInvalidArgument naming the first bad value.
    """
    device_name(name)
    mgmtdev_handle(mgmtdev)
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

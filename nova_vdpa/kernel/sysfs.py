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

"""vDPA devices in sysfs: driver binding, character devices, VF facts.

The kernel's vdpa bus autoprobes a new device to whichever bus driver
registered first (``virtio_vdpa`` or ``vhost_vdpa``); :meth:`VdpaSysfs.bind`
makes the choice deterministic. A device bound to ``vhost_vdpa`` gets one
``vhost-vdpa-N`` child whose ``dev`` file names the ``/dev/vhost-vdpa-N``
node; N comes from vhost_vdpa's own numbering, never from the device name.

The sysfs, ``/dev`` and ``/proc`` roots are parameters so that tests run
against a tree in a temporary folder. Writes to sysfs files and the
exclusive open of a character device go through :meth:`VdpaSysfs._write`
and :meth:`VdpaSysfs._open_exclusive`, the two places where the kernel
reacts to what we do. Only the standard library is imported here.
"""

import dataclasses
import errno
import os

from nova_vdpa import exception
from nova_vdpa.kernel import validate

VHOST_VDPA = 'vhost_vdpa'
VIRTIO_VDPA = 'virtio_vdpa'
_DRIVERS = (VHOST_VDPA, VIRTIO_VDPA)


@dataclasses.dataclass(frozen=True)
class Holder:
    """A process that has a character device open."""

    pid: int
    cmdline: str


@dataclasses.dataclass(frozen=True)
class VirtualFunction:
    """Facts about an SR-IOV VF from PCI sysfs."""

    address: str
    pf_address: str
    vf_index: int
    numa_node: int | None


class VdpaSysfs:
    """The vdpa bus, the vhost-vdpa nodes and PCI facts, under given roots.

    :param sys_root: where sysfs is mounted.
    :param dev_root: where the device nodes are.
    :param proc_root: where procfs is mounted.
    """

    def __init__(self, sys_root: str = '/sys', dev_root: str = '/dev',
                 proc_root: str = '/proc') -> None:
        self.sys_root = sys_root
        self.dev_root = dev_root
        self.proc_root = proc_root
        self.bus = os.path.join(sys_root, 'bus', 'vdpa')

    # -------------------------------------------------- kernel touch points
    def _write(self, path: str, value: str) -> None:
        """Write one value to a sysfs attribute, as ``echo`` would."""
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def _open_exclusive(self, path: str) -> int:
        """Open a vhost-vdpa node; the kernel allows one opener (EBUSY)."""
        return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)

    # -------------------------------------------------------------- helpers
    def _device_dir(self, name: str) -> str:
        validate.device_name(name)
        return os.path.join(self.bus, 'devices', name)

    @staticmethod
    def _error(cls: type, name: str, attribute: str, reason: str) -> Exception:
        return cls(device=name, mgmtdev='-', attribute=attribute,
                   reason=reason)

    def _not_on_bus(self, name: str) -> Exception:
        return self._error(exception.VdpaDeviceNotFound, name, 'sysfs',
                           'not on the vdpa bus')

    def exists(self, name: str) -> bool:
        """Whether the vdpa bus has a device called ``name``."""
        return os.path.isdir(self._device_dir(name))

    def driver(self, name: str) -> str | None:
        """The bus driver ``name`` is bound to, or None when unbound.

        :raises: VdpaDeviceNotFound
        """
        path = self._device_dir(name)
        try:
            return os.path.basename(os.readlink(path + '/driver'))
        except FileNotFoundError:
            if not os.path.isdir(path):
                raise self._not_on_bus(name)
            return None

    def parent(self, name: str) -> str | None:
        """The device's parent (a VF's PCI address); None for simulators."""
        real = os.path.realpath(self._device_dir(name))
        up = os.path.dirname(real)
        if up == os.path.realpath(os.path.join(self.sys_root, 'devices')):
            return None
        return os.path.basename(up)

    # -------------------------------------------------------------- binding
    def bind(self, name: str, driver: str = VHOST_VDPA) -> None:
        """Bind ``name`` to ``driver``, whatever autoprobe chose.

        ``driver_override`` pins the choice (so a later reprobe keeps it),
        then the device is unbound from another driver and probed again.
        Kernels without ``driver_override`` (< 5.17) get unbind + bind.

        :raises: VdpaDeviceNotFound, VdpaBindError
        """
        if driver not in _DRIVERS:
            raise self._error(exception.VdpaBindError, name, driver,
                              'unknown vdpa bus driver')
        path = self._device_dir(name)
        drv_dir = os.path.join(self.bus, 'drivers', driver)
        if not os.path.isdir(drv_dir):
            raise self._error(exception.VdpaBindError, name, driver,
                              'module %s is not loaded' % driver)
        current = self.driver(name)
        override = path + '/driver_override'
        has_override = os.path.exists(override)
        try:
            if has_override:
                self._write(override, driver)
            if current == driver:
                return
            if current is not None:
                self._write(os.path.join(self.bus, 'drivers', current,
                                         'unbind'), name)
            if has_override:
                self._write(os.path.join(self.bus, 'drivers_probe'), name)
            else:
                self._write(os.path.join(drv_dir, 'bind'), name)
        except OSError as e:
            raise self._error(exception.VdpaBindError, name, driver,
                              'sysfs write failed: %s' % e)
        now = self.driver(name)
        if now != driver:
            raise self._error(exception.VdpaBindError, name, driver,
                              'device is bound to %s after the probe'
                              % (now or 'no driver'))

    # ------------------------------------------------------------- chardevs
    def chardev(self, name: str) -> str:
        """The ``/dev/vhost-vdpa-N`` node of a device bound to vhost_vdpa.

        The node is found through the device's ``vhost-vdpa-N`` child and
        accepted only if its ``st_rdev`` matches the child's ``dev`` file.

        :raises: VdpaDeviceNotFound, VdpaChardevNotFound
        """
        path = self._device_dir(name)
        try:
            children = [c for c in os.listdir(path)
                        if c.startswith('vhost-vdpa-')]
        except FileNotFoundError:
            raise self._not_on_bus(name)
        if len(children) != 1:
            raise self._error(
                exception.VdpaChardevNotFound, name, 'vhost-vdpa-*',
                'bound to %s, %d vhost-vdpa children'
                % (self.driver(name) or 'no driver', len(children)))
        child = children[0]
        node = os.path.join(self.dev_root, child)
        try:
            with open(os.path.join(path, child, 'dev')) as f:
                major, minor = (int(x) for x in f.read().split(':'))
            rdev = os.stat(node).st_rdev
        except (OSError, ValueError) as e:
            raise self._error(exception.VdpaChardevNotFound, name, child,
                              str(e))
        if rdev != os.makedev(major, minor):
            raise self._error(
                exception.VdpaChardevNotFound, name, child,
                '%s is %d:%d, sysfs says %d:%d' % (
                    node, os.major(rdev), os.minor(rdev), major, minor))
        return node

    def is_open(self, chardev: str) -> bool:
        """Whether a process holds ``chardev`` open (exclusive open probe).

        vhost-vdpa admits one opener, so an open that fails with EBUSY
        proves a holder without reading other processes' file tables. The
        probe itself needs only write permission on the node.

        :raises: VdpaSysfsError when the node cannot be opened at all.
        """
        try:
            fd = self._open_exclusive(chardev)
        except OSError as e:
            if e.errno == errno.EBUSY:
                return True
            raise self._error(exception.VdpaSysfsError, '-', chardev,
                              'cannot open: %s' % e)
        os.close(fd)
        return False

    def holders(self, chardev: str) -> list[Holder]:
        """Processes with ``chardev`` among their open files (/proc scan).

        Processes whose file table this process may not read (another user,
        or more capabilities than ours without CAP_SYS_PTRACE) are skipped.
        """
        found: list[Holder] = []
        try:
            pids = [p for p in os.listdir(self.proc_root) if p.isdigit()]
        except OSError:
            return found
        for pid in pids:
            fd_dir = os.path.join(self.proc_root, pid, 'fd')
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(os.path.join(fd_dir, fd))
                except OSError:
                    continue
                if target == chardev:
                    found.append(Holder(int(pid), self._cmdline(pid)))
                    break
        return found

    def _cmdline(self, pid: str) -> str:
        try:
            with open(os.path.join(self.proc_root, pid, 'cmdline'),
                      'rb') as f:
                raw = f.read()
        except OSError:
            return '?'
        return raw.rstrip(b'\0').replace(b'\0', b' ').decode(
            errors='replace')[:200]

    # ------------------------------------------------------------- PCI/VFs
    def vf_info(self, address: str) -> VirtualFunction:
        """PF, VF index and NUMA node of a VF.

        :param address: the VF's PCI address, ``0000:08:00.2``.
        :raises: VdpaSysfsError when ``address`` is not a VF.
        """
        validate.pci_address(address)
        pci = os.path.join(self.sys_root, 'bus', 'pci', 'devices')
        vf_dir = os.path.join(pci, address)
        try:
            pf = os.path.basename(os.readlink(vf_dir + '/physfn'))
        except OSError as e:
            raise self._error(exception.VdpaSysfsError, '-', address,
                              'not an SR-IOV VF: %s' % e)
        index = None
        pf_dir = os.path.join(pci, pf)
        for entry in os.listdir(pf_dir):
            if not entry.startswith('virtfn'):
                continue
            target = os.path.basename(os.readlink(
                os.path.join(pf_dir, entry)))
            if target == address:
                index = int(entry[len('virtfn'):])
                break
        if index is None:
            raise self._error(exception.VdpaSysfsError, '-', address,
                              'PF %s does not list it' % pf)
        numa = None
        try:
            with open(vf_dir + '/numa_node') as f:
                numa = int(f.read().strip())
        except (OSError, ValueError):
            pass
        return VirtualFunction(address=address, pf_address=pf,
                               vf_index=index,
                               numa_node=None if numa is None or numa < 0
                               else numa)

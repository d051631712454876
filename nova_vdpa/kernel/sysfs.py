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

Kernel traps handled here, each seen on the test bed's 6.12 kernel:

* Of the sysfs writes binding uses, ``drivers/vhost_vdpa/unbind`` blocks,
  uninterruptibly, while a process holds the chardev (like DEV_DEL);
  ``driver_override``, ``drivers_probe`` (it only attaches an unbound
  device) and ``drivers/*/bind`` never unbind. So :meth:`VdpaSysfs.bind`
  refuses a held device before it writes anything, and runs the unbind
  itself with a deadline for a holder that opens after the check. While
  such an unbind waits, the device already looks unbound: the kernel drops
  the ``driver`` link and deletes the chardev (``vhost-vdpa-N`` and its
  /dev node) before vhost_vdpa's remove waits for the holder.
* ``bind``, ``unbind`` and ``drivers_probe`` find the device by name with
  ``sysfs_streq``, which ignores one trailing newline: ``abc`` and
  ``abc\\n`` are the same device to them. A write for a name whose twin
  exists is refused rather than sent to the wrong device.
* Without the vdpa module, ``/sys/bus/vdpa`` is absent: that is
  VdpaNotLoaded, not a missing device.

The sysfs, ``/dev`` and ``/proc`` roots are parameters so that tests run
against a tree in a temporary folder. Writes to sysfs files and the
exclusive open of a character device go through :meth:`VdpaSysfs._write`
and :meth:`VdpaSysfs._open_exclusive`, the two places where the kernel
reacts to what we do. Only the standard library is imported here (and
``logging``, never oslo.log).
"""

import dataclasses
import errno
import fcntl
import logging
import os
import time

from nova_vdpa import exception
from nova_vdpa.kernel import native
from nova_vdpa.kernel import validate
from nova_vdpa.kernel import vhost

LOG = logging.getLogger(__name__)

VHOST_VDPA = 'vhost_vdpa'
VIRTIO_VDPA = 'virtio_vdpa'
_DRIVERS = (VHOST_VDPA, VIRTIO_VDPA)
#: seconds an unbind from vhost_vdpa may take before the caller gets an
#: error (a process may open the chardev between the check and the write)
DEFAULT_UNBIND_TIMEOUT = 10.0
#: longest command line an error message quotes
CMDLINE_MAX = 200

#: Management devices whose devices always map guest memory by virtual
#: address: VDUSE (its devices live in a userspace process that sees the
#: guest's memory through the VMM's mappings).
VA_MANAGEMENT_DEVICES = frozenset({'vduse'})
#: Management devices of vdpa_sim, whose ``use_va`` module parameter
#: (``Y`` by default, read-only after load) decides.
VDPA_SIM_MANAGEMENT_DEVICES = frozenset({'vdpasim_net', 'vdpasim_blk'})
VDPA_SIM_USE_VA = 'module/vdpa_sim/parameters/use_va'


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


def shorten(text: str, width: int = CMDLINE_MAX) -> str:
    """Cut ``text`` to at most ``width`` characters at a word boundary."""
    if len(text) <= width:
        return text
    cut = text.rfind(' ', 0, width - 3)
    if cut <= 0:
        # One word longer than the width: no boundary to cut at.
        cut = width - 3
    return text[:cut].rstrip() + '...'


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

    def _ioctl(self, fd: int, request: int, buf: bytes) -> bytes:
        """One read ioctl on an open vhost-vdpa node."""
        return fcntl.ioctl(fd, request, buf)

    # -------------------------------------------------------------- helpers
    def _device_dir(self, name: str) -> str:
        validate.existing_device_name(name)
        if not os.path.isdir(self.bus):
            raise exception.VdpaNotLoaded(device=name, mgmtdev='-',
                                          attribute=self.bus)
        return os.path.join(self.bus, 'devices', name)

    @staticmethod
    def _error(cls: type, name: str, attribute: str, reason: str) -> Exception:
        return cls(device=name, mgmtdev='-', attribute=attribute,
                   reason=reason)

    def _not_on_bus(self, name: str) -> Exception:
        return self._error(exception.VdpaDeviceNotFound, name, 'sysfs',
                           'not on the vdpa bus')

    def _os_error(self, name: str, path: str, e: OSError) -> Exception:
        """A typed error for a failed read of the device's sysfs tree."""
        if e.errno == errno.ENOENT:
            return self._not_on_bus(name)
        reason = str(e)
        if e.errno == errno.ENAMETOOLONG:
            reason = ('the name is too long to be a sysfs path component '
                      '(255 bytes): %s' % e)
        return self._error(exception.VdpaSysfsError, name, path, reason)

    def exists(self, name: str) -> bool:
        """Whether the vdpa bus has a device called ``name``.

        :raises: VdpaNotLoaded, VdpaSysfsError (unreadable sysfs)
        """
        path = self._device_dir(name)
        try:
            os.stat(path)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise self._os_error(name, path, e)
        return True

    def driver(self, name: str) -> str | None:
        """The bus driver ``name`` is bound to, or None when unbound.

        :raises: VdpaDeviceNotFound, VdpaNotLoaded, VdpaSysfsError
        """
        path = self._device_dir(name)
        try:
            return os.path.basename(os.readlink(path + '/driver'))
        except FileNotFoundError:
            if not self.exists(name):
                raise self._not_on_bus(name)
            return None
        except OSError as e:
            raise self._os_error(name, path + '/driver', e)

    def uses_virtual_addresses(self, mgmtdev: str) -> bool:
        """Whether ``mgmtdev``'s devices get guest memory by virtual address.

        vhost-vdpa maps guest memory for such a device only where QEMU's
        mapping is file-backed and shared (6.12 ``drivers/vhost/vdpa.c``,
        ``vhost_vdpa_va_map`` skips every other VMA without an error):
        with QEMU's default anonymous, private RAM the device cannot read
        the rings and carries no frame. VDUSE devices always use virtual
        addresses; vdpa_sim's do when its ``use_va`` parameter is on (the
        default); hardware (mlx5, pds, octep, ifcvf) maps by IOVA.

        :param mgmtdev: a management device handle (``vdpasim_net``,
            ``pci/0000:08:00.2``).
        :raises: VdpaSysfsError when vdpa_sim's parameter cannot be read.
        """
        if mgmtdev in VA_MANAGEMENT_DEVICES:
            return True
        if mgmtdev not in VDPA_SIM_MANAGEMENT_DEVICES:
            return False
        path = os.path.join(self.sys_root, VDPA_SIM_USE_VA)
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError as e:
            raise exception.VdpaSysfsError(
                device='-', mgmtdev=mgmtdev, attribute=path,
                reason='cannot tell whether vdpa_sim uses virtual '
                'addresses: %s' % e)
        # A bool module parameter reads Y or N.
        return value.upper() in ('Y', '1')

    def parent(self, name: str) -> str | None:
        """The device's parent (a VF's PCI address); None for simulators.

        :raises: VdpaDeviceNotFound, VdpaNotLoaded, VdpaSysfsError
        """
        if not self.exists(name):
            raise self._not_on_bus(name)
        real = os.path.realpath(self._device_dir(name))
        up = os.path.dirname(real)
        if up == os.path.realpath(os.path.join(self.sys_root, 'devices')):
            return None
        return os.path.basename(up)

    # -------------------------------------------------------------- binding
    def bind(self, name: str, driver: str = VHOST_VDPA,
             timeout: float = DEFAULT_UNBIND_TIMEOUT) -> None:
        """Bind ``name`` to ``driver``, whatever autoprobe chose.

        A device held through its vhost-vdpa chardev is refused before
        anything is written. Then ``driver_override`` pins the choice (so
        a later reprobe keeps it), the device is unbound from another
        driver and probed again. Kernels without ``driver_override``
        (< 5.17) get unbind + bind.

        :param timeout: seconds an unbind from vhost_vdpa may block (a
            process may open the chardev after the check).
        :raises: VdpaDeviceInUse, VdpaUnbindTimeout, VdpaDeviceNotFound,
            VdpaBindError, VdpaNotLoaded, VdpaInvalidArgument
        """
        validate.timeout(timeout, name)
        path = self._device_dir(name)
        if driver not in _DRIVERS:
            raise self._error(exception.VdpaBindError, name, repr(driver),
                              'unknown vdpa bus driver')
        drv_dir = os.path.join(self.bus, 'drivers', driver)
        if not os.path.isdir(drv_dir):
            raise self._error(exception.VdpaBindError, name, driver,
                              'module %s is not loaded' % driver)
        current = self.driver(name)
        if current != driver:
            # Before anything is written: nothing half done.
            self._check_unambiguous(name, self.bus)
        if current == VHOST_VDPA and driver != VHOST_VDPA:
            self.check_not_in_use(name, action='rebind to %s' % driver)
        override = path + '/driver_override'
        has_override = os.path.exists(override)
        probe = os.path.join(self.bus, 'drivers_probe')
        try:
            if has_override:
                self._write(override, driver)
            if current == driver:
                return
            if current is not None:
                self._unbind(name, current, timeout)
            if has_override:
                self._write_name(probe, name)
                now = self._probe_again(name, probe, timeout)
            else:
                self._write_name(os.path.join(drv_dir, 'bind'), name)
                now = self.driver(name)
        except OSError as e:
            raise self._error(exception.VdpaBindError, name, driver,
                              'sysfs write failed: %s' % e)
        if now != driver:
            raise self._error(exception.VdpaBindError, name, driver,
                              'device is bound to %s after the probe'
                              % (now or 'no driver'))

    def _probe_again(self, name: str, probe: str,
                     timeout: float) -> str | None:
        """The device's driver after a probe, probing until it has one.

        An unbind that waited for a holder ends after the holder closes
        the chardev; until then the kernel keeps the device's driver set
        although its ``driver`` link is gone, and ``drivers_probe`` skips a
        device that has a driver. So a probe right after such a holder let
        go can be a silent no-op (seen on 6.12): probe again, for at most
        ``timeout`` seconds, until the removal has ended.
        """
        now = self.driver(name)
        deadline = time.monotonic() + timeout
        delay = 0.01
        while now is None and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
            self._write_name(probe, name)
            now = self.driver(name)
        return now

    def _check_unambiguous(self, name: str, path: str) -> None:
        """Refuse a name the kernel could take for another device.

        :raises: VdpaBindError when ``name``'s twin with or without a
            trailing newline exists, so that writing ``name`` to ``path``
            could act on the other device.
        """
        twin = name[:-1] if name.endswith('\n') else name + '\n'
        if twin and self.exists(twin):
            raise self._error(
                exception.VdpaBindError, name, os.path.basename(path),
                'device %r also exists, and the kernel matches names '
                'written to %s ignoring one trailing newline: refusing to '
                'act on the wrong device' % (twin, path))

    def _write_name(self, path: str, name: str) -> None:
        """Write a device name to a by-name attribute (bind, probe...)."""
        self._check_unambiguous(name, path)
        self._write(path, name)

    def _unbind(self, name: str, driver: str, timeout: float) -> None:
        """Unbind ``name`` from ``driver``; never wait past ``timeout``.

        Unbinding from vhost_vdpa waits for the chardev's holder, so that
        write runs on a thread of its own: a holder that opened after the
        check leaves that thread in the kernel until it closes the node
        (the device then ends up unbound), not the caller.
        """
        path = os.path.join(self.bus, 'drivers', driver, 'unbind')
        if driver != VHOST_VDPA:
            self._write_name(path, name)
            return
        try:
            chardev = self.chardev(name)
        except exception.VdpaChardevNotFound:
            chardev = 'vhost-vdpa-*'
        done = native.threading.Event()
        failed: list[BaseException] = []

        def unbind() -> None:
            try:
                self._write_name(path, name)
            except BaseException as e:
                failed.append(e)
            finally:
                done.set()

        native.threading.Thread(target=unbind, daemon=True,
                                name='vdpa-unbind').start()
        if not native.wait(done, timeout):
            raise exception.VdpaUnbindTimeout(
                device=name, mgmtdev='-', driver=driver, timeout=timeout,
                chardev=chardev)
        if failed:
            raise failed[0]

    # ------------------------------------------------------------- chardevs
    def chardev(self, name: str) -> str:
        """The ``/dev/vhost-vdpa-N`` node of a device bound to vhost_vdpa.

        The node is found through the device's ``vhost-vdpa-N`` child and
        accepted only if its ``st_rdev`` matches the child's ``dev`` file.

        :raises: VdpaDeviceNotFound, VdpaChardevNotFound, VdpaNotLoaded,
            VdpaSysfsError
        """
        path = self._device_dir(name)
        try:
            children = [c for c in os.listdir(path)
                        if c.startswith('vhost-vdpa-')]
        except OSError as e:
            raise self._os_error(name, path, e)
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

    def _child_rdev(self, name: str) -> int:
        """The device number sysfs gives ``name``'s vhost-vdpa child.

        :raises: VdpaChardevNotFound, VdpaDeviceNotFound, VdpaNotLoaded
        """
        path = self._device_dir(name)
        try:
            children = [c for c in os.listdir(path)
                        if c.startswith('vhost-vdpa-')]
            if len(children) != 1:
                raise self._error(
                    exception.VdpaChardevNotFound, name, 'vhost-vdpa-*',
                    '%d vhost-vdpa children' % len(children))
            with open(os.path.join(path, children[0], 'dev')) as f:
                major, minor = (int(x) for x in f.read().split(':'))
        except FileNotFoundError:
            raise self._not_on_bus(name)
        except (OSError, ValueError) as e:
            raise self._error(exception.VdpaChardevNotFound, name,
                              'vhost-vdpa-*', str(e))
        return os.makedev(major, minor)

    def _open_node(self, chardev: str, name: str) -> int:
        """Open ``chardev``, checked to be ``name``'s node once open.

        The device number is compared on the open descriptor (``fstat``),
        not on the path: a node replaced between a lookup and the open
        (the device deleted and its number given to another) is never
        taken for this device's. ``name`` ``-``: no check.

        :raises: OSError from the open (EBUSY: held); VdpaChardevNotFound
            when the open node is not the device's.
        """
        fd = self._open_exclusive(chardev)
        if name == '-':
            return fd
        try:
            rdev = os.fstat(fd).st_rdev
            wanted = self._child_rdev(name)
        except BaseException:
            os.close(fd)
            raise
        if rdev != wanted:
            os.close(fd)
            raise self._error(
                exception.VdpaChardevNotFound, name, chardev,
                'the open %s is %d:%d, sysfs says %d:%d' % (
                    chardev, os.major(rdev), os.minor(rdev),
                    os.major(wanted), os.minor(wanted)))
        return fd

    def is_open(self, chardev: str, name: str = '-') -> bool:
        """Whether a process holds ``chardev`` open (exclusive open probe).

        vhost-vdpa admits one opener, so an open that fails with EBUSY
        proves a holder without reading other processes' file tables. The
        probe itself needs only write permission on the node. While the
        probe has it open, another opener gets EBUSY: callers probe only
        a device no guest may be starting with (see
        :mod:`nova_vdpa.allocator.allocator`, "Opening nodes").

        :param name: the vDPA device the node belongs to; its sysfs device
            number is checked on the opened descriptor.
        :raises: VdpaSysfsError when the node cannot be opened at all;
            VdpaChardevNotFound when it is not ``name``'s.
        """
        try:
            fd = self._open_node(chardev, name)
        except OSError as e:
            if e.errno == errno.EBUSY:
                return True
            raise self._error(exception.VdpaSysfsError, name, chardev,
                              'cannot open %s to see whether it is held: %s'
                              % (chardev, e))
        os.close(fd)
        return False

    def backend(self, chardev: str, name: str = '-') -> vhost.Backend:
        """The vhost backend of an unheld node (migration support).

        Opening the node resets the device when it is closed again, and
        makes another opener fail with EBUSY meanwhile: call it only on a
        device no VMM uses or is being started with.

        :param name: the vDPA device the node belongs to; its sysfs device
            number is checked on the opened descriptor.
        :raises: VdpaSysfsError when the node cannot be opened (a process
            holds it: the kernel answers these ioctls to its one opener
            only) or read; VdpaChardevNotFound when it is not ``name``'s.
        """
        try:
            fd = self._open_node(chardev, name)
        except OSError as e:
            why = ('a process holds it, and the kernel answers only its one '
                   'opener' if e.errno == errno.EBUSY else str(e))
            raise self._error(exception.VdpaSysfsError, name, chardev,
                              'cannot open %s: %s' % (chardev, why))
        try:
            return vhost.read_backend(fd, self._ioctl)
        except OSError as e:
            raise self._error(exception.VdpaSysfsError, name, chardev,
                              'cannot read the vhost backend of %s: %s'
                              % (chardev, e))
        finally:
            os.close(fd)

    def holders(self, chardev: str, name: str = '-') -> list[Holder]:
        """Processes with ``chardev`` among their open files (/proc scan).

        Processes whose file table this process may not read (another user,
        or more capabilities than ours without CAP_SYS_PTRACE) cannot be
        named; how many there were is logged at debug level.

        :param name: the vDPA device the node belongs to, for errors.
        :raises: VdpaSysfsError when /proc itself cannot be read.
        """
        found: list[Holder] = []
        try:
            pids = [p for p in os.listdir(self.proc_root) if p.isdigit()]
        except OSError as e:
            raise self._error(exception.VdpaSysfsError, name, chardev,
                              'cannot list processes in %s: %s'
                              % (self.proc_root, e))
        hidden = 0
        for pid in pids:
            fd_dir = os.path.join(self.proc_root, pid, 'fd')
            try:
                fds = os.listdir(fd_dir)
            except FileNotFoundError:
                continue  # the process ended meanwhile
            except OSError:
                hidden += 1
                continue
            for fd in fds:
                try:
                    target = os.readlink(os.path.join(fd_dir, fd))
                except OSError:
                    continue  # closed meanwhile
                if target == chardev:
                    cmdline = self._cmdline(pid)
                    if cmdline is not None:
                        found.append(Holder(int(pid), cmdline))
                    break
        if hidden:
            LOG.debug('Looking for holders of %s (vDPA device %s): the open '
                      'files of %d processes are not readable by this '
                      'process', chardev, exception.escape_control(name),
                      hidden)
        return found

    def _cmdline(self, pid: str) -> str | None:
        """The command line of ``pid``, or None if it ended meanwhile."""
        try:
            with open(os.path.join(self.proc_root, pid, 'cmdline'),
                      'rb') as f:
                raw = f.read()
        except (FileNotFoundError, ProcessLookupError):
            return None
        except OSError as e:
            LOG.warning('Cannot read the command line of pid %s: %s', pid, e)
            return 'command line unreadable: %s' % e.strerror
        # Any process chooses its own command line: escaped before it
        # reaches an error or a log line.
        return shorten(exception.escape_control(
            raw.rstrip(b'\0').replace(b'\0', b' ').decode(
                errors='replace')))

    def check_not_in_use(self, name: str, action: str = 'delete',
                         mgmtdev: str = '-') -> None:
        """Raise if a process holds ``name``'s vhost-vdpa chardev open.

        A device bound to vhost_vdpa whose chardev cannot be found is
        refused too: whether it is held cannot be known.

        :param action: what the caller was about to do, for the message.
        :param mgmtdev: the device's management device, for the message.
        :raises: VdpaDeviceInUse naming the holder when /proc lets us see
            it; VdpaChardevNotFound; VdpaDeviceNotFound.
        """
        if self.driver(name) != VHOST_VDPA:
            # Only vhost_vdpa exposes a chardev userspace could hold.
            return
        chardev = self.chardev(name)
        if not self.is_open(chardev, name):
            return
        holders = self.holders(chardev, name)
        if holders:
            pid, cmdline = str(holders[0].pid), holders[0].cmdline
        else:
            pid = 'unknown'
            cmdline = ('a process whose open files this process may not '
                       'read; try fuser %s' % chardev)
        raise exception.VdpaDeviceInUse(device=name, mgmtdev=mgmtdev,
                                        chardev=chardev, pid=pid,
                                        cmdline=cmdline, action=action)

    # ------------------------------------------------------------- PCI/VFs
    def vf_info(self, address: str) -> VirtualFunction:
        """PF, VF index and NUMA node of a VF.

        :param address: the VF's PCI address, ``0000:08:00.2``.
        :raises: VdpaPciDeviceError when ``address`` is not a VF.
        """
        validate.pci_address(address)
        pci = os.path.join(self.sys_root, 'bus', 'pci', 'devices')
        vf_dir = os.path.join(pci, address)

        def bad(attribute: str, reason: str) -> Exception:
            return self._error(exception.VdpaPciDeviceError, address,
                               attribute, reason)
        try:
            pf = os.path.basename(os.readlink(vf_dir + '/physfn'))
        except OSError as e:
            raise bad('physfn', 'not an SR-IOV VF: %s' % e)
        index = None
        pf_dir = os.path.join(pci, pf)
        try:
            for entry in os.listdir(pf_dir):
                if not entry.startswith('virtfn'):
                    continue
                target = os.path.basename(os.readlink(
                    os.path.join(pf_dir, entry)))
                if target == address:
                    index = int(entry[len('virtfn'):])
                    break
        except (OSError, ValueError) as e:
            raise bad('virtfn*', 'cannot read the VFs of PF %s: %s'
                      % (pf, e))
        if index is None:
            raise bad('virtfn*', 'PF %s does not list it' % pf)
        numa = None
        try:
            with open(vf_dir + '/numa_node') as f:
                numa = int(f.read().strip())
        except (OSError, ValueError) as e:
            LOG.warning('Cannot read the NUMA node of VF %s, treating it as '
                        'unknown: %s', address, e)
        return VirtualFunction(address=address, pf_address=pf,
                               vf_index=index,
                               numa_node=None if numa is None or numa < 0
                               else numa)

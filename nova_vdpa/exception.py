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

"""Typed errors raised by nova-vdpa.

Every module of nova-vdpa raises subclasses of :class:`NovaVdpaException`;
none lets a raw ``OSError`` or ``NetlinkError`` escape. This module imports
nothing from OpenStack so the kernel boundary may use it; the Nova facade
converts these errors to Nova's own exceptions where Nova expects them.

oslo.privsep re-creates an exception raised in the privileged daemon as
``exc_type(*exc.args)``, so every class accepts its finished message as the
single positional argument and keeps it as ``args[0]``.

Every string in a message is passed through :func:`escape_control` first:
a device name, management device, MAC or command line may come from a
caller or from the kernel, and a newline or a terminal escape in it must
not forge a log line.
"""

from typing import Any


class NovaVdpaException(Exception):
    """Base class: ``msg_fmt`` is formatted with the keyword arguments.

    :param message: a finished message; when given, ``msg_fmt`` is not used.
    :param kwargs: values for ``msg_fmt``; also kept as ``self.kwargs``.
    """

    msg_fmt = "An unknown nova-vdpa error occurred."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        # Names, management devices, MACs and command lines come from
        # callers, the kernel and /proc: escaped here, on whichever side
        # of the privsep channel the error is made, before any log shows
        # them (see escape_control).
        self.kwargs = {k: escape_control(v) if isinstance(v, str) else v
                       for k, v in kwargs.items()}
        if message is None:
            # A missing keyword is a programming error: fail loudly rather
            # than hide the real message behind a generic one.
            message = self.msg_fmt % self.kwargs
        super().__init__(escape_control(message))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.msg_fmt


# --- Kernel boundary (nova_vdpa.kernel, nova_vdpa.privsep) ---

class VdpaKernelError(NovaVdpaException):
    """The kernel refused or failed a vdpa request.

    Messages name the device, the management device and the attribute
    concerned (``-`` when one does not apply) so that an operator can act
    on the log line alone.
    """

    msg_fmt = ("vdpa request failed for device %(device)s on management "
               "device %(mgmtdev)s (%(attribute)s): %(reason)s")


class VdpaNotLoaded(VdpaKernelError):
    msg_fmt = ("kernel vdpa support not loaded: %(attribute)s is absent "
               "(modprobe vdpa, or a vdpa driver such as vhost_vdpa or "
               "mlx5_vdpa); device %(device)s, management device "
               "%(mgmtdev)s")


class VdpaManagementDeviceNotFound(VdpaKernelError):
    msg_fmt = ("management device %(mgmtdev)s not found (device "
               "%(device)s, attribute %(attribute)s)")


class VdpaDeviceNotFound(VdpaKernelError):
    msg_fmt = ("vDPA device %(device)s not found (management device "
               "%(mgmtdev)s, attribute %(attribute)s)")


class VdpaDeviceExists(VdpaKernelError):
    msg_fmt = ("vDPA device %(device)s already exists (management device "
               "%(mgmtdev)s, attribute %(attribute)s)")


class VdpaAttributeNotSupported(VdpaKernelError):
    msg_fmt = ("management device %(mgmtdev)s does not support attribute "
               "%(attribute)s (device %(device)s): %(reason)s")


class VdpaNoSpace(VdpaKernelError):
    msg_fmt = ("management device %(mgmtdev)s has no room for device "
               "%(device)s (attribute %(attribute)s; mlx5 allows one vDPA "
               "device per VF or SF): %(reason)s")


class VdpaPermissionDenied(VdpaKernelError):
    msg_fmt = ("permission denied for device %(device)s on management "
               "device %(mgmtdev)s (attribute %(attribute)s): creating and "
               "deleting vDPA devices needs CAP_NET_ADMIN")


class VdpaInvalidRequest(VdpaKernelError):
    msg_fmt = ("invalid vdpa request for device %(device)s on management "
               "device %(mgmtdev)s (attribute %(attribute)s): %(reason)s")


class VdpaInvalidArgument(VdpaInvalidRequest):
    """Refused before anything reached the kernel."""


class VdpaDeviceInUse(VdpaKernelError):
    msg_fmt = ("vDPA device %(device)s (management device %(mgmtdev)s) is "
               "in use: its character device %(chardev)s is held by pid "
               "%(pid)s (%(cmdline)s); refusing to %(action)s it, the kernel "
               "would block until that process closes it")


class VdpaDeleteTimeout(VdpaKernelError):
    msg_fmt = ("deleting vDPA device %(device)s (management device "
               "%(mgmtdev)s, attribute %(attribute)s) did not finish within "
               "%(timeout)s s: a process opened its character device; the "
               "kernel completes the deletion once that process closes it")


class VdpaUnbindTimeout(VdpaKernelError):
    msg_fmt = ("unbinding vDPA device %(device)s from %(driver)s did not "
               "finish within %(timeout)s s: a process opened its character "
               "device %(chardev)s after the in-use check; the kernel "
               "completes the unbind once that process closes it, and the "
               "device is then left without a driver")


class VdpaFeaturesNotNegotiated(VdpaKernelError):
    msg_fmt = ("vDPA device %(device)s has no negotiated features yet (no "
               "guest or virtio_vdpa has started it), so the kernel cannot "
               "report %(attribute)s: %(reason)s")


class VdpaSysfsError(VdpaKernelError):
    msg_fmt = ("sysfs operation on vDPA device %(device)s failed "
               "(management device %(mgmtdev)s, attribute %(attribute)s): "
               "%(reason)s")


class VdpaBindError(VdpaSysfsError):
    msg_fmt = ("could not bind vDPA device %(device)s (management device "
               "%(mgmtdev)s) to %(attribute)s: %(reason)s")


class VdpaPciDeviceError(VdpaSysfsError):
    msg_fmt = ("PCI device %(device)s is not usable (%(attribute)s): "
               "%(reason)s")


class VdpaChardevNotFound(VdpaSysfsError):
    msg_fmt = ("vDPA device %(device)s (management device %(mgmtdev)s) has "
               "no usable vhost-vdpa character device (%(attribute)s): "
               "%(reason)s")


# --- Guest configuration (nova_vdpa.libvirt) ---

class InvalidInterfaceXml(NovaVdpaException):
    msg_fmt = "Not a valid vdpa interface XML: %(reason)s"


class HypervisorTooOld(NovaVdpaException):
    msg_fmt = ("vDPA interfaces need %(component)s >= %(required)s, this "
               "host has %(component)s %(found)s")


class InvalidVdpaInterfaceRequest(NovaVdpaException):
    msg_fmt = "Cannot configure the vdpa interface: %(reason)s"


class SharedGuestMemoryRequired(NovaVdpaException):
    """The port's device maps guest memory by virtual address."""

    msg_fmt = ("%(port)s: vDPA devices of management device %(mgmtdev)s "
               "map guest memory by virtual address, which works only with "
               "shared, file-backed guest memory, and this guest's flavor "
               "does not give it: set the flavor's hw:mem_page_size to "
               "large (or a huge page size; Nova then maps guest memory "
               "shared) or [libvirt] file_backed_memory on this host")


# --- Allocator (nova_vdpa.allocator) and the privileged side's refusals ---

class VdpaAllocatorError(NovaVdpaException):
    """A port's vDPA device could not be allocated, looked up or released.

    ``port_id`` and ``vf_address`` are kept in :attr:`kwargs` so that the
    Nova facade can pick its own exception without parsing the message.
    """

    msg_fmt = ("cannot serve port %(port_id)s on VF %(vf_address)s: "
               "%(reason)s")


class VdpaPortRequestInvalid(VdpaAllocatorError):
    msg_fmt = ("invalid vDPA request for port %(port_id)s on VF "
               "%(vf_address)s: %(reason)s")


class VdpaManagementDeviceNotAllowed(VdpaAllocatorError):
    msg_fmt = ("VF %(vf_address)s (port %(port_id)s): management device "
               "%(mgmtdev)s may not be used: %(reason)s")


class VdpaAdoptedDeviceNotBound(VdpaAllocatorError):
    msg_fmt = ("VF %(vf_address)s (port %(port_id)s) carries vDPA device "
               "%(device)s, which nova-vdpa did not create and never "
               "modifies; it is bound to %(driver)s, not vhost_vdpa: bind "
               "it to vhost_vdpa (driver_override) or delete it")


class VdpaStaleDeviceInUse(VdpaAllocatorError):
    msg_fmt = ("vDPA device %(device)s of port %(port_id)s (VF "
               "%(vf_address)s) has %(found)s instead of %(wanted)s and a "
               "process holds it: it cannot be recreated until that "
               "process closes it")


class VdpaDeviceNotOurs(VdpaKernelError):
    """The privileged side refused a device nova-vdpa may not touch."""

    msg_fmt = ("refusing to %(attribute)s vDPA device %(device)s "
               "(management device %(mgmtdev)s): %(reason)s")


class VdpaKernelTimeout(VdpaKernelError):
    """A kernel or privsep call missed its deadline.

    The usual cause: a deletion waiting for a process to close its
    vhost-vdpa character device holds the kernel's vdpa lock, and every
    other vdpa request waits behind it.
    """

    msg_fmt = ("the kernel did not answer %(attribute)s for vDPA device "
               "%(device)s (management device %(mgmtdev)s) within "
               "%(timeout)s s: the kernel is busy or another vdpa request "
               "is stuck there, typically a deletion waiting for a process "
               "to close a vhost-vdpa character device")


# --- Hardware offload (nova_vdpa.kernel.devlink, .netdev, nova_vdpa.network)

class DevlinkError(NovaVdpaException):
    """devlink refused or failed a request about a device."""

    msg_fmt = "devlink request for %(handle)s failed: %(reason)s"


class DevlinkNotAvailable(DevlinkError):
    msg_fmt = ("the kernel has no devlink generic netlink family "
               "(%(handle)s): %(reason)s")


class DevlinkDeviceNotFound(DevlinkError):
    msg_fmt = "devlink device %(handle)s not found: %(reason)s"


class EswitchNotSupported(DevlinkError):
    msg_fmt = ("devlink device %(handle)s has no eswitch (its driver does "
               "not support switchdev): %(reason)s")


class DevlinkPermissionDenied(DevlinkError):
    msg_fmt = ("permission denied reading the eswitch of %(handle)s: "
               "devlink eswitch requests need CAP_NET_ADMIN")


class NetdevError(NovaVdpaException):
    """A network device fact could not be read from sysfs or ethtool."""

    msg_fmt = "network device %(ifname)s: %(reason)s"


class VfNotFound(NetdevError):
    msg_fmt = ("%(ifname)s is not an SR-IOV VF with a switchdev uplink: "
               "%(reason)s")


class OvsdbUnavailable(NovaVdpaException):
    msg_fmt = ("cannot read the Open vSwitch database at %(connection)s: "
               "%(reason)s")


class OvsUnixctlError(NovaVdpaException):
    msg_fmt = ("ovs-vswitchd did not answer %(command)s on %(target)s: "
               "%(reason)s")


class OffloadNotReady(NovaVdpaException):
    """The host cannot offload a vdpa port's VF; raised before allocation.

    ``vf_address`` names the VF; the message says what is wrong and the fix.
    """

    msg_fmt = "VF %(vf_address)s cannot carry a vdpa port: %(reason)s"


# --- The privsep daemon's channel (nova_vdpa.privsep.channel)

class VdpaPrivsepDied(VdpaKernelError):
    """The privsep daemon died (SIGKILL, the OOM killer) during a call.

    Whether the kernel operation happened is unknown: the allocator reads
    the device back and repairs it through a new daemon.
    """

    msg_fmt = ("the privsep daemon died during %(attribute)s of vDPA "
               "device %(device)s (management device %(mgmtdev)s): "
               "%(reason)s; the next call starts a new daemon")


class PrivsepIncompatible(NovaVdpaException):
    msg_fmt = ("nova-vdpa was checked against oslo.privsep %(release)s and "
               "needs %(what)s, which this oslo.privsep does not have")


class VdpaPrivilegedCallsBusy(VdpaKernelError):
    """Too many privileged vdpa calls of this process are in flight.

    Raised at once, instead of queueing one more call behind the others
    (oslo.privsep's daemon queues without a bound).
    """

    msg_fmt = ("refusing to %(attribute)s vDPA device %(device)s "
               "(management device %(mgmtdev)s) now: %(limit)s privileged "
               "vdpa calls of this process are already in flight, the "
               "kernel or the privsep daemon is not keeping up")


class VdpaBackendNotRead(VdpaKernelError):
    """A device's vhost backend is not known, and its node is not opened.

    Its node admits one opener: opening it when a guest may be starting
    with the device would make that start fail with EBUSY.
    """

    msg_fmt = ("the vhost backend of vDPA device %(device)s (management "
               "device %(mgmtdev)s) is not known: %(reason)s")


class VdpaDeviceHeldByAnotherGuest(VdpaAllocatorError):
    """A port's device is in another instance's guest on this host.

    The port moved (detached from one instance, attached to another, or
    bound anew) while the first guest still holds its device: never
    handed to a second guest.
    """

    msg_fmt = ("vDPA device %(device)s (%(chardev)s) of port %(port_id)s "
               "(VF %(vf_address)s) is in use by %(holder)s, not by "
               "instance %(instance)s: the port moved while another guest "
               "still holds its device; it is not given to a second guest")


# --- Messages

def escape_control(value: object) -> str:
    """``str(value)`` with control and format characters escaped.

    Like :func:`repr` for the characters that could forge or hide log
    text (C0/C1 controls such as newline and ESC, DEL, line and paragraph
    separators, bidirectional overrides and other format characters,
    surrogates, unassigned code points), without repr's quotes: a
    printable name reads as it is. A backslash is kept as it is, so the
    function is idempotent and a repr()'d value is not escaped twice.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    # Not printable (str.isprintable): the Unicode categories "Other" and
    # "Separator" except the space.
    return ''.join(c if c.isprintable() else repr(c)[1:-1] for c in text)

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
"""

from typing import Any


class NovaVdpaException(Exception):
    """Base class: ``msg_fmt`` is formatted with the keyword arguments.

    :param message: a finished message; when given, ``msg_fmt`` is not used.
    :param kwargs: values for ``msg_fmt``; also kept as ``self.kwargs``.
    """

    msg_fmt = "An unknown nova-vdpa error occurred."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        if message is None:
            # A missing keyword is a programming error: fail loudly rather
            # than hide the real message behind a generic one.
            message = self.msg_fmt % kwargs
        super().__init__(message)

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
    msg_fmt = ("kernel vdpa support not loaded: the generic netlink family "
               "'vdpa' is absent (modprobe vdpa, or a vdpa driver such as "
               "vhost_vdpa or mlx5_vdpa); device %(device)s, management "
               "device %(mgmtdev)s, attribute %(attribute)s")


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
    msg_fmt = ("vDPA device %(device)s (management device %(mgmtdev)s, "
               "attribute %(attribute)s) is in use by pid %(pid)s "
               "(%(cmdline)s): refusing to delete it, the kernel would "
               "block until that process closes it")


class VdpaDeleteTimeout(VdpaKernelError):
    msg_fmt = ("deleting vDPA device %(device)s (management device "
               "%(mgmtdev)s, attribute %(attribute)s) did not finish within "
               "%(timeout)s s: a process opened its character device; the "
               "kernel completes the deletion once that process closes it")


class VdpaSysfsError(VdpaKernelError):
    msg_fmt = ("sysfs operation on vDPA device %(device)s failed "
               "(management device %(mgmtdev)s, attribute %(attribute)s): "
               "%(reason)s")


class VdpaBindError(VdpaSysfsError):
    msg_fmt = ("could not bind vDPA device %(device)s (management device "
               "%(mgmtdev)s) to %(attribute)s: %(reason)s")


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

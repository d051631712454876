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


# --- Guest configuration (nova_vdpa.libvirt) ---

class InvalidInterfaceXml(NovaVdpaException):
    msg_fmt = "Not a valid vdpa interface XML: %(reason)s"


class HypervisorTooOld(NovaVdpaException):
    msg_fmt = ("vDPA interfaces need %(component)s >= %(required)s, this "
               "host has %(component)s %(found)s")


class InvalidVdpaInterfaceRequest(NovaVdpaException):
    msg_fmt = "Cannot configure the vdpa interface: %(reason)s"

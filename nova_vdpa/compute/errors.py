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

"""One map from nova-vdpa's exceptions to Nova's.

The Nova exception is chosen for what the compute manager does next:

* the host cannot serve the port now (no room on the VF, the management
  device or kernel support missing, a stale device still held, a device
  another server's guest still holds, a VF not
  ready for offload (PF not in switchdev mode, no representor), a kernel
  call that failed or timed out, a value this host's NIC refuses (the
  kernel's EINVAL or ERANGE on DEV_NEW: an MTU or a queue-pair count
  another NIC may accept), libvirt or QEMU too old, a device that
  needs shared guest memory the flavor does not give):
  ``ComputeResourcesUnavailable``, which ``_build_and_run_instance`` turns
  into a reschedule to another host (nova 34.0.0);
* the request itself cannot be met anywhere (the flavor and image
  disagree - Nova's ``FlavorImageConflict`` from
  ``hardware.get_vif_multiqueue_constraint``, which the build would
  otherwise reschedule like any unknown error -, a binding or value we
  refuse ourselves before anything reaches the kernel): ``InvalidInput``,
  which the build turns into ``BuildAbortException``, not retried.

Our messages name management devices, sysfs paths, pids and command lines:
they go to the log with ``instance=``; the Nova exception carries only a
text fit for the instance fault a tenant reads (the port id is the
tenant's own).
"""

import contextlib
import typing as ty

import nova.exception as nova_exception
from oslo_log import log as logging

from nova_vdpa import exception

LOG = logging.getLogger(__name__)

# (our exception, Nova's exception, tenant-facing reason). The first
# match wins, so subclasses come before their bases.
_MAP: tuple[tuple[type[Exception], type[nova_exception.NovaException], str],
            ...] = (
    # The request, not the host: rescheduling would fail the same way.
    (exception.VdpaPortRequestInvalid, nova_exception.InvalidInput,
     'port %(port)s cannot get a vDPA device: its binding is incomplete '
     'or malformed'),
    (exception.VdpaInvalidArgument, nova_exception.InvalidInput,
     'the vDPA device for port %(port)s cannot be created with the '
     'requested settings (MAC address, MTU or queue pairs)'),
    (exception.InvalidVdpaInterfaceRequest, nova_exception.InvalidInput,
     'the vDPA interface for port %(port)s cannot be configured from '
     'the port, flavor and image given'),
    # This host cannot serve the port now: another host may.
    # The kernel's EINVAL/ERANGE (our own checks passed): this NIC refused
    # the settings.
    (exception.VdpaInvalidRequest,
     nova_exception.ComputeResourcesUnavailable,
     'the vDPA device for port %(port)s cannot be created on this host '
     'with the requested settings (MTU or queue pairs)'),
    (exception.SharedGuestMemoryRequired,
     nova_exception.ComputeResourcesUnavailable,
     'the vDPA device for port %(port)s on this host needs shared guest '
     'memory, which the flavor does not provide'),
    (exception.VdpaNoSpace, nova_exception.ComputeResourcesUnavailable,
     'no vDPA device can be created for port %(port)s on this host: its '
     'virtual function has no room left'),
    (exception.VdpaDeviceHeldByAnotherGuest,
     nova_exception.ComputeResourcesUnavailable,
     'the vDPA device for port %(port)s is still in use by another server '
     'on this host'),
    (exception.VdpaStaleDeviceInUse,
     nova_exception.ComputeResourcesUnavailable,
     'the vDPA device for port %(port)s is still in use on this host'),
    (exception.VdpaDeviceInUse, nova_exception.ComputeResourcesUnavailable,
     'the vDPA device for port %(port)s is still in use on this host'),
    (exception.OffloadNotReady, nova_exception.ComputeResourcesUnavailable,
     'port %(port)s cannot be plugged into the virtual switch on this '
     'host: its virtual function is not ready for offload'),
    (exception.HypervisorTooOld, nova_exception.ComputeResourcesUnavailable,
     'this host cannot run vDPA interfaces (port %(port)s)'),
    (exception.NovaVdpaException,
     nova_exception.ComputeResourcesUnavailable,
     'no vDPA device could be prepared for port %(port)s on this host'),
)


def to_nova(error: Exception, port_id: str) -> nova_exception.NovaException:
    """Return the Nova exception for one of ours.

    :param error: a :class:`~nova_vdpa.exception.NovaVdpaException`.
    :param port_id: the Neutron port the operation was for.
    :returns: a Nova exception whose ``format_message()`` a tenant may
        read.
    :raises: TypeError if ``error`` is not one of ours (a bug, not a
        condition to translate).
    """
    for ours, nova_cls, reason in _MAP:
        if isinstance(error, ours):
            return nova_cls(reason=reason % {'port': port_id})
    raise TypeError('not a nova-vdpa exception: %r' % (error,))


@contextlib.contextmanager
def translated(instance: ty.Any, port_id: str) -> ty.Iterator[None]:
    """Log our exception in full and raise Nova's in its place.

    Nova's ``FlavorImageConflict`` (the flavor and the image disagree on
    multiqueue) becomes ``InvalidInput``: no other host would do better.
    Its message names the tenant's own flavor and image values only.

    :param instance: the ``nova.objects.Instance`` the call is for.
    :param port_id: the Neutron port the call is for.
    """
    try:
        yield
    except nova_exception.FlavorImageConflict as e:
        LOG.error('vDPA interface for port %(port)s: %(error)s',
                  {'port': port_id, 'error': e.format_message()},
                  instance=instance)
        raise nova_exception.InvalidInput(
            reason='port %s: %s' % (port_id, e.format_message())) from e
    except exception.NovaVdpaException as e:
        LOG.error('vDPA operation for port %(port)s failed: %(error)s',
                  {'port': port_id, 'error': e}, instance=instance)
        raise to_nova(e, port_id) from e

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

"""The privileged read of a device's live-migration support.

The ``/dev/vhost-vdpa-N`` nodes are root's with mode 0600, and the kernel
answers the backend ioctls (:mod:`nova_vdpa.kernel.vhost`) only through an
open node. The daemon opens only a device of ours (name and management
device checked as for a binding), finds its node itself from sysfs, and
returns plain numbers.

nova-compute does not call it: while the daemon has the node open, a
guest starting with the device fails with EBUSY, so the allocator keeps
the backend the daemon read when it created the device
(:func:`nova_vdpa.privsep.vdpa.create_bound_device`). It stays for tools
and tests, on devices no guest is being started with.
"""

from oslo_privsep import comm

from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import vhost
from nova_vdpa import privsep
from nova_vdpa.privsep import channel
from nova_vdpa.privsep import vdpa

_ACTION = 'read the vhost backend of'


def read_backend(name: str) -> vhost.Backend:
    """The vhost backend of an unheld device of ours.

    :raises: VdpaDeviceNotOurs before escalation (the daemon checks the
        management device too); VdpaKernelTimeout;
        VdpaPrivilegedCallsBusy; VdpaDeviceNotFound,
        VdpaChardevNotFound, VdpaSysfsError (held, or not a vhost-vdpa
        node).
    """
    vdpa.check_ours(name, None, _ACTION)
    try:
        with vdpa._admitted(name, '-', _ACTION):
            return vhost.Backend(*channel.call(
                privsep.vdpa_pctxt, _read_backend, name, action=_ACTION,
                device=name))
    except comm.PrivsepTimeout:
        raise vdpa._timeout_error(name, '-', _ACTION, vdpa.CALL_TIMEOUT)


@privsep.vdpa_pctxt.entrypoint_with_timeout(vdpa.CALL_TIMEOUT)
def _read_backend(name: str) -> tuple[int, int, int]:
    vdpa.check_ours(name, None, _ACTION)

    def job(client: netlink.VdpaClient) -> tuple[int, int, int]:
        # On the daemon's kernel worker: the lookup waits behind the
        # kernel's vdpa lock like any vdpa request.
        vdpa.check_ours_in_daemon(name, _ACTION, client)
        s = vdpa._sysfs_factory()
        backend = s.backend(s.chardev(name), name)
        return backend.features, backend.vq_groups, backend.address_spaces
    return vdpa._in_kernel(job, name, '-', _ACTION)

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

"""Privileged entrypoints of nova-vdpa (oslo.privsep).

Holds the single privsep context and the narrow functions that need it.
Every check on the arguments happens before escalation, in the unprivileged
caller; the entrypoints take primitive arguments only. Every call goes
through :func:`nova_vdpa.privsep.channel.call`, which fails it at once,
typed, when the daemon dies and starts a new daemon for the next one.

Capabilities, as measured on the test bed's 6.12 kernel (see
tests/functional/test_kernel_privsep.py and the release note):

* ``CAP_NET_ADMIN``: the vdpa family marks DEV_NEW, DEV_DEL and
  VSTATS_GET ``GENL_ADMIN_PERM``; without it the kernel answers EPERM.
* Nothing else. The daemon keeps uid 0, and the sysfs files binding needs
  (``driver_override``, ``drivers/*/unbind``, ``drivers_probe``) and the
  ``/dev/vhost-vdpa-N`` nodes are owned by root with owner write
  permission: a uid 0 process with an empty capability set wrote all three
  and re-bound a device (``setpriv --bounding-set=-all`` in the bed), so
  CAP_DAC_OVERRIDE and CAP_SYS_ADMIN are not needed.
* ``CAP_SYS_PTRACE`` is deliberately not taken: it would only let the
  daemon read the file table of a holder that has more privileges than it
  (QEMU). The exclusive open of the chardev proves a holder exists without
  it; the error then says "pid unknown".

Configuration: creating the context registers oslo.privsep's options as
``[nova_vdpa_privileged]`` on ``cfg.CONF`` (oslo.privsep does that in
``PrivContext``, for every project); importing this package is therefore
not free of side effects, unlike importing ``nova_vdpa`` or
``nova_vdpa.conf``. The group name and the capability set above live in
``nova_vdpa.conf``, whose ``list_opts`` shows the same options with the
same defaults in the sample configuration.
"""

from oslo_privsep import priv_context

from nova_vdpa import conf

vdpa_pctxt: priv_context.PrivContext = priv_context.PrivContext(
    'nova_vdpa.privsep',
    cfg_section=conf.privileged_group.name,
    pypath=__name__ + '.vdpa_pctxt',
    capabilities=conf.PRIVILEGED_CAPABILITIES,
)

# The daemon imports this module to find the context: import the
# entrypoints with it, so that no call's deadline pays for loading them
# (pyroute2 alone took 11-60 s under the test bed's TCG, past the 30 s
# deadline of a create).
from nova_vdpa.privsep import migration as _migration  # noqa: E402,F401,H306
from nova_vdpa.privsep import vdpa as _vdpa  # noqa: E402,F401,H306

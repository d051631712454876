"""Privileged entrypoints of nova-vdpa (oslo.privsep).

Holds the single privsep context and the narrow functions that need it.
Every check on the arguments happens before escalation, in the unprivileged
caller; the entrypoints take primitive arguments only.

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
"""

from oslo_privsep import capabilities as caps
from oslo_privsep import priv_context

vdpa_pctxt: priv_context.PrivContext = priv_context.PrivContext(
    'nova_vdpa.privsep',
    cfg_section='nova_vdpa_privileged',
    pypath=__name__ + '.vdpa_pctxt',
    capabilities=[caps.CAP_NET_ADMIN],
)

# The daemon imports this module to find the context: import the
# entrypoints with it, so that no call's deadline pays for loading them
# (pyroute2 alone took 11-60 s under the test bed's TCG, past the 30 s
# deadline of a create).
from nova_vdpa.privsep import vdpa as _vdpa  # noqa: E402,F401,H306

"""The ``[vdpa]`` configuration group of nova-vdpa.

Nothing is registered at import time: nova-compute (through the driver) and
the console scripts call :func:`register_opts`; oslo-config-generator reads
:func:`list_opts` through the ``oslo.config.opts`` entry point ``nova_vdpa``.
"""

from oslo_config import cfg

vdpa_group = cfg.OptGroup(
    'vdpa',
    title='vDPA options',
    help="""
Options for the nova-vdpa plugin, which creates a vDPA device through the
kernel's vdpa netlink interface for each port with ``vnic_type=vdpa``
instead of relying on devices created by hand.
""")

vdpa_opts = [
    cfg.ListOpt(
        'management_devices',
        default=[],
        help="""
vDPA management devices this compute node may create devices on.

Each entry names a management device as the kernel reports it: with its bus
(``pci/0000:08:00.2``, ``auxiliary/mlx5_core.sf.3``) or bare when it has no
bus (``vdpasim_net``). An empty list allows every management device that
supports the network class.

Possible values:

* An empty list (default): use every network-capable management device.
* A list of management device names.
"""),
    cfg.ListOpt(
        'simulated_vfs',
        default=[],
        help="""
FOR TESTS ONLY: serve these VF addresses from another management device.

On real hardware a VF's vDPA devices are made on the management device
``pci/<VF address>`` and this option must stay empty. Test beds without
vDPA-capable VFs map a (possibly made-up) VF address to a simulator such
as ``vdpasim_net``. An entry ``<VF>=<mgmtdev>@<device>`` also names a
device an operator created for that VF, which nova-vdpa then adopts (uses
as it is, never modifies or deletes), as it would a device under a real
VF's PCI device. ``management_devices`` still restricts which
management devices may be used.

Possible values:

* An empty list (default, and the only value for production).
* Entries ``<VF address>=<management device>``, for example
  ``0000:00:05.1=vdpasim_net``, or
  ``<VF address>=<management device>@<device name>``.

Related options:

* ``management_devices``
"""),
    cfg.BoolOpt(
        'offload_checks',
        default=True,
        help="""
Check that this host can offload vdpa ports to Open vSwitch.

When enabled, nova-compute checks the host when it starts (OVSDB
``hw-offload``, the integration bridge's datapath, each PF's eswitch mode,
each VF's representor, TC offload) and logs a summary; before creating a
port's vDPA device it checks the port's VF (its PF in ``switchdev`` mode,
exactly one representor) and fails the build at once, to be rescheduled,
when the VF is not ready; after plugging it checks the representor's row in
the integration bridge and logs a warning when the OVS agent could not
bring the port up. VFs listed in ``simulated_vfs`` are never checked.

Possible values:

* True (default): check.
* False: do not check. For hosts without a switchdev-capable NIC, where
  nothing could pass, and for test beds with simulated VFs.

Related options:

* ``simulated_vfs``
* ``[os_vif_ovs] ovsdb_connection`` (the database checked)
"""),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[vdpa]`` group and its options on ``conf``."""
    conf.register_group(vdpa_group)
    conf.register_opts(vdpa_opts, group=vdpa_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """Return the options for oslo-config-generator."""
    return [(vdpa_group, list(vdpa_opts))]

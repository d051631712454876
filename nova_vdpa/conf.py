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
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[vdpa]`` group and its options on ``conf``."""
    conf.register_group(vdpa_group)
    conf.register_opts(vdpa_opts, group=vdpa_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """Return the options for oslo-config-generator."""
    return [(vdpa_group, list(vdpa_opts))]

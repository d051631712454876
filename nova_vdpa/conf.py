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

"""The configuration of nova-vdpa: ``[nova_vdpa]`` and its privsep daemon.

``[nova_vdpa]`` (not ``[vdpa]``, a name Nova could one day take for itself)
holds the plugin's options, a plain list: add an option by appending it to
``vdpa_opts``. ``[nova_vdpa_privileged]`` holds oslo.privsep's options for
the daemon of ``nova_vdpa.privsep.vdpa_pctxt``.

Nothing is registered at import time: nova-compute (through the driver) and
the console scripts call :func:`register_opts`; oslo-config-generator reads
:func:`list_opts` through the ``oslo.config.opts`` entry point
``nova_vdpa``. The privileged group is registered by oslo.privsep itself,
on ``cfg.CONF``, when ``nova_vdpa.privsep`` creates its context; it is
listed here so that the sample configuration shows it.
"""

import copy
from typing import Collection

from oslo_config import cfg
from oslo_privsep import capabilities as caps
from oslo_privsep import priv_context

from nova_vdpa.kernel import model
from nova_vdpa.kernel import validate

#: seconds a deletion may take when ``delete_timeout`` is not set
DEFAULT_DELETE_TIMEOUT = 10.0
#: seconds a kernel read may take when ``read_timeout`` is not set
DEFAULT_READ_TIMEOUT = 10.0
#: seconds an OVSDB connection or read may take (``ovsdb_timeout``)
DEFAULT_OVSDB_TIMEOUT = 3.0
#: devices of ours a management device without a bus takes by default
DEFAULT_MAX_DEVICES_PER_SIMULATOR = 32
MAX_DEVICES_PER_SIMULATOR = 1024
#: devices of ours a management device with a bus (a VF's or an SF's)
#: takes: mlx5 itself answers ENOSPC to a second
MAX_DEVICES_PER_BUS_DEVICE = 1

vdpa_group = cfg.OptGroup(
    'nova_vdpa',
    title='nova-vdpa options',
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
bus (``vdpasim_net``). Only listed management devices are used: the
driver types only their VFs as vdpa, and the privsep daemon, which reads
this option from its own configuration files, refuses to create, bind or
delete a device on any other. An empty list allows none: nova-vdpa then
creates no device and nova-compute logs an error at start naming this
option.

Possible values:

* An empty list (default): no management device may be used.
* A list of management device names.

Related options:

* ``max_devices_per_simulator``
* ``simulated_vfs``
"""),
    cfg.ListOpt(
        'simulated_vfs',
        default=[],
        help="""
TEST ONLY - never set this on a production host. Serve these VF addresses
from a simulator's management device.

On real hardware a VF's vDPA devices are made on the management device
``pci/<VF address>`` and this option must stay empty. Test beds without
vDPA-capable VFs map a (possibly made-up) VF address to a simulator such
as ``vdpasim_net``. An entry ``<VF>=<mgmtdev>@<device>`` also names a
device an operator created for that VF, which nova-vdpa then adopts (uses
as it is, never modifies or deletes), as it would a device under a real
VF's PCI device. ``management_devices`` still restricts which
management devices may be used. Only a simulator may be named: a
management device without a bus (``vdpasim_net``, a VDUSE device);
nova-compute refuses to start when an entry names one with a bus
(``pci/...``, ``auxiliary/...``), which is hardware.

Possible values:

* An empty list (default, and the only value for production).
* Entries ``<VF address>=<management device>``, for example
  ``0000:00:05.1=vdpasim_net``, or
  ``<VF address>=<management device>@<device name>``.

Related options:

* ``management_devices``
"""),
    cfg.FloatOpt(
        'delete_timeout',
        default=DEFAULT_DELETE_TIMEOUT,
        min=1.0,
        max=validate.MAX_TIMEOUT,
        help="""
Seconds to wait for the kernel to delete a vDPA device.

nova-vdpa refuses to delete a device while a process (QEMU) holds its
``/dev/vhost-vdpa-N``, but the kernel's deletion blocks until that file is
closed, so a process that opens it between the check and the deletion
would hold the request indefinitely. After this many seconds the
deletion fails with an error naming the device instead of hanging
nova-compute; the kernel still completes it once the holder closes the
file.

Possible values:

* A number of seconds from 1 to 300.
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
bring the port up. On an ML2/OVN chassis (read from Open vSwitch:
``external_ids:ovn-remote`` and the other ``ovn-`` keys), it also checks the
chassis settings, ovn-controller's southbound connection and the Geneve
encapsulation's offload, and fails a build at once when ovn-controller
cannot claim the port (not running, or not connected). VFs listed in
``simulated_vfs`` are never checked.

Possible values:

* True (default): check.
* False: do not check. For hosts without a switchdev-capable NIC, where
  nothing could pass, and for test beds with simulated VFs.

Related options:

* ``simulated_vfs``
* ``ovn_rundir``
* ``[os_vif_ovs] ovsdb_connection`` (the database checked)
"""),
    cfg.StrOpt(
        'ovn_rundir',
        default=None,
        help="""
Run folder of ovn-controller on an ML2/OVN chassis: where its pid file
``ovn-controller.pid`` and its control socket
``ovn-controller.<pid>.ctl`` are. The offload checks ask ovn-controller
there whether it is connected to its southbound database (the request
``ovn-appctl -t ovn-controller connection-status`` makes); nothing else
of OVN is contacted. Unused on ML2/OVS hosts.

Possible values:

* Unset (default): ``$OVN_RUNDIR`` of nova-compute's environment, else
  ``/run/ovn`` (Debian's and Ubuntu's ovn-host).
* A folder path.

Related options:

* ``offload_checks``
"""),
    cfg.FloatOpt(
        'read_timeout',
        default=DEFAULT_READ_TIMEOUT,
        min=1.0,
        max=validate.MAX_TIMEOUT,
        help="""
Seconds a kernel read (a vdpa netlink request) may take.

Every vdpa netlink request waits behind a deletion that is stuck on a held
device, in uninterruptible sleep. nova-compute reads the kernel on one
thread with this deadline: past it the caller gets an error naming the
request (a build is rescheduled, the PCI inventory keeps its last vdpa
typing) and later reads fail at once until the stuck one returns.

Possible values:

* A number of seconds from 1 to 300.

Related options:

* ``delete_timeout``
"""),
    cfg.FloatOpt(
        'ovsdb_timeout',
        default=DEFAULT_OVSDB_TIMEOUT,
        min=0.1,
        max=validate.MAX_TIMEOUT,
        help="""
Seconds nova-vdpa waits for the Open vSwitch database, to connect and then
per read, in its offload checks (at start-up and after each plug).

An absent ovsdb-server must not hold up nova-compute's start or a plug:
past this deadline the check is logged as not done.

Possible values:

* A number of seconds from 0.1 to 300.

Related options:

* ``offload_checks``
* ``[os_vif_ovs] ovsdb_connection``
"""),
    cfg.BoolOpt(
        'live_migration_without_unplug',
        default=False,
        help="""
Live-migrate vdpa ports without unplugging them from the guest.

Upstream Nova live-migrates a guest with vdpa ports by detaching them on
the source and attaching them again on the destination: the guest loses
those NICs meanwhile. When this option is enabled on both hosts and
QEMU 10.0 or later runs on both, nova-vdpa instead makes the port's vDPA
device on the destination before the migration, checks that it can be
suspended and isolate its control queue, checks that the source's device
offers the same queue pairs, features and MTU, and lets QEMU migrate the
interface with the guest. Any port that fails a check takes upstream's
path, with the reason logged at INFO; a migration is never failed for it.
On the destination, the option decides whether devices are prepared and
recorded; on the source, whether a recorded port may stay in the guest.

Possible values:

* False (default): upstream's path (hot-unplug on the source, plug on the
  destination) for every vdpa port.
* True: vdpa ports that both hosts can migrate stay in the guest.

Related options:

* ``[libvirt] live_migration_*`` (Nova's migration settings, unchanged)
"""),
    cfg.IntOpt(
        'max_devices_per_simulator',
        default=DEFAULT_MAX_DEVICES_PER_SIMULATOR,
        min=1,
        max=MAX_DEVICES_PER_SIMULATOR,
        help="""
Most vDPA devices of nova-vdpa on one management device without a bus.

Management devices without a bus are simulators (``vdpasim_net``), which
take any number of devices. The privsep daemon counts the devices of
nova-vdpa (``nvdpa-`` names) already on the management device before it
creates one, and refuses the creation with a "no room" error (the build is
rescheduled) when this many exist, so that no caller can make devices
without bound. A management device with a bus (``pci/<VF>``,
``auxiliary/<SF>``) serves one VF or SF and always takes at most one
device of nova-vdpa; this option does not change that. The daemon reads
the option from its own configuration files.

Possible values:

* A number of devices from 1 to %d.

Related options:

* ``management_devices``
* ``simulated_vfs``
""" % MAX_DEVICES_PER_SIMULATOR),
]

privileged_group = cfg.OptGroup(
    'nova_vdpa_privileged',
    title='nova-vdpa privsep daemon options',
    help="""
oslo.privsep options of the daemon that creates, binds and deletes vDPA
devices for nova-vdpa (``nova_vdpa.privsep.vdpa_pctxt``).
""")

#: the daemon's capabilities (see nova_vdpa.privsep for why these)
PRIVILEGED_CAPABILITIES = [caps.CAP_NET_ADMIN]


def _privileged_opts() -> list[cfg.Opt]:
    # oslo.privsep's own options, with the default our context gives the
    # capabilities (PrivContext sets it when it registers the options),
    # by name: the option reads names and numbers alike.
    opts = copy.deepcopy(priv_context.OPTS)
    for opt in opts:
        if opt.name == 'capabilities':
            opt.default = [caps.CAPS_BYVALUE[c]
                           for c in PRIVILEGED_CAPABILITIES]
    return opts


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[nova_vdpa]`` group and its options on ``conf``."""
    conf.register_group(vdpa_group)
    conf.register_opts(vdpa_opts, group=vdpa_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """Return the options for oslo-config-generator."""
    return [(vdpa_group, list(vdpa_opts)),
            (privileged_group, _privileged_opts())]


def not_allowed_reason(allowed: Collection[str]) -> str:
    """Why a management device outside ``allowed`` is refused.

    One wording for the allocator and the privsep daemon, naming the
    option to set.
    """
    if not allowed:
        return ('[%s] management_devices is empty, which allows no '
                'management device: list the ones nova-vdpa may use'
                % vdpa_group.name)
    return ('it is not in [%s] management_devices (%s)'
            % (vdpa_group.name, ', '.join(sorted(allowed))))


def device_limit(mgmtdev: str, per_simulator: int) -> int:
    """Most devices of ours ``mgmtdev`` may carry.

    :param per_simulator: ``max_devices_per_simulator``, for a management
        device without a bus.
    """
    bus, _ = model.split_mgmtdev(mgmtdev)
    return MAX_DEVICES_PER_BUS_DEVICE if bus else per_simulator

# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The checks of an ML2/OVN chassis, from the host's own sources only.

Neutron's OVN driver binds a vdpa port as an ordinary chassis port: no
agent, ovn-controller claims the representor by its ``iface-id`` and sets
``external_ids:ovn-installed`` on the Interface when the port's flows are
in place; Neutron waits for that to send ``network-vif-plugged``. What can
stop it, and how we see it without Neutron's API or OVN's databases:

* the chassis's settings (``system-id``, ``ovn-remote``,
  ``ovn-encap-type``, ``ovn-encap-ip``): the ``Open_vSwitch`` row;
* whether ovn-controller runs and reaches its southbound database: its
  own unixctl socket, ``connection-status`` (``connected`` or ``not
  connected``), the request ``ovn-appctl -t ovn-controller
  connection-status`` sends; the socket is ``<rundir>/ovn-controller.
  <pid>.ctl`` with the pid in ``<rundir>/ovn-controller.pid``
  (``$OVN_RUNDIR``, /run/ovn in Debian's packages);
* whether Geneve can be offloaded: the encap IP's netdev must be the
  switchdev uplink of the VFs' NIC, or an OVS bridge port beside it (the
  NIC then offloads the encapsulation through TC's tunnel device), with
  ``hw-tc-offload`` on.

Seen with OVN 23.03: ``connection-status`` answers ``not connected`` at
once when the southbound server goes away or ``ovn-remote`` is removed,
while ``ovn-installed`` stays on the Interfaces it already set (so
``ovn-installed`` says the flows were installed, not that the chassis is
still connected: both are shown). ovn-controller takes no ``--unixctl``
option: the socket is always in its run folder.
"""

import os

from nova_vdpa import exception
from nova_vdpa.kernel import netdev as netdev_mod
from nova_vdpa.network import checks
from nova_vdpa.network import flows
from nova_vdpa.network import mechanism as mechanism_mod
from nova_vdpa.network import ovsdb as ovsdb_mod

#: where Debian's ovn-host keeps ovn-controller's pid file and socket
DEFAULT_RUNDIR = '/run/ovn'
#: encapsulations a switchdev NIC can offload through TC (mlx5: both)
OFFLOADABLE_ENCAPS = ('geneve', 'vxlan')
CONTROLLER = 'ovn-controller'

Status = checks.Status
CheckResult = checks.CheckResult


def rundir(path: str | None = None) -> str:
    """ovn-controller's run folder: ``path``, ``$OVN_RUNDIR`` or /run/ovn."""
    return path or os.environ.get('OVN_RUNDIR') or DEFAULT_RUNDIR


def check_chassis(detected: mechanism_mod.Detected) -> CheckResult:
    """The chassis has a name and a southbound database to register in."""
    ids = detected.external_ids
    missing = [k for k in ('system-id', 'ovn-remote') if not ids.get(k)]
    if missing:
        return CheckResult(
            'ovn-chassis', 'Open_vSwitch', Status.FAILURE,
            'external_ids:%s unset: ovn-controller cannot register this '
            'chassis, and no port can be bound here. Fix: ovs-vsctl set '
            'Open_vSwitch . %s' % (
                ' and '.join(missing),
                ' '.join('external_ids:%s=<%s>' % (
                    k, 'chassis name' if k == 'system-id'
                    else 'tcp:<southbound IP>:6642') for k in missing)))
    return CheckResult('ovn-chassis', 'Open_vSwitch', Status.SUCCESS,
                       'chassis %s, southbound database %s'
                       % (ids['system-id'], ids['ovn-remote']),
                       detail=ids['system-id'])


def check_controller(ovn_rundir: str | None = None,
                     remote: str | None = None) -> CheckResult:
    """ovn-controller runs and is connected to its southbound database.

    :param remote: ``ovn-remote``, for the message.
    """
    subject = CONTROLLER
    try:
        target = flows.daemon_socket(rundir(ovn_rundir), CONTROLLER)
        answer = flows.transact(target, 'connection-status', []).strip()
    except exception.OvsUnixctlError as e:
        return CheckResult(
            'ovn-controller', subject, Status.FAILURE,
            '%s: no port can be claimed on this chassis. Fix: start '
            'ovn-controller (systemctl start ovn-controller), or pass '
            'the folder of its pid file ([nova_vdpa] ovn_rundir)'
            % e.message)
    if answer != 'connected':
        return CheckResult(
            'ovn-controller', subject, Status.FAILURE,
            'ovn-controller says %r: it is not connected to its '
            'southbound database%s, so new ports are not bound to this '
            'chassis and Nova waits for network-vif-plugged in vain. Fix: '
            'check external_ids:ovn-remote, the southbound server and '
            'the network path to it (ovn-controller.log)'
            % (answer, ' %s' % remote if remote else ''))
    return CheckResult('ovn-controller', subject, Status.SUCCESS,
                       'ovn-controller is connected to its southbound '
                       'database%s' % (' %s' % remote if remote else ''))


def encap_types(detected: mechanism_mod.Detected) -> list[str]:
    value = detected.external_ids.get('ovn-encap-type') or ''
    return [t.strip() for t in value.split(',') if t.strip()]


def check_encap(detected: mechanism_mod.Detected,
                netdevs: netdev_mod.Netdevs) -> CheckResult:
    """The encapsulation type and IP: set, offloadable, on this host."""
    types = encap_types(detected)
    ip = detected.external_ids.get('ovn-encap-ip')
    subject = 'Open_vSwitch'
    if not types or not ip:
        return CheckResult(
            'ovn-encap', subject, Status.FAILURE,
            'external_ids:%s unset: ovn-controller cannot build tunnels '
            'to other chassis. Fix: ovs-vsctl set Open_vSwitch . '
            'external_ids:ovn-encap-type=geneve '
            'external_ids:ovn-encap-ip=<this host\'s tunnel IP>'
            % ' and '.join(k for k, v in (('ovn-encap-type', types),
                                          ('ovn-encap-ip', ip)) if not v))
    try:
        owners = netdevs.address_owners(ip)
    except (exception.NetdevError, ValueError) as e:
        return CheckResult('ovn-encap', subject, Status.FAILURE,
                           'external_ids:ovn-encap-ip %s: %s' % (ip, e))
    if not owners:
        return CheckResult(
            'ovn-encap', subject, Status.FAILURE,
            'external_ids:ovn-encap-ip is %s, which no netdev of this host '
            'holds: tunnels to and from this chassis cannot work. Fix: set '
            'it to the IP of the tunnel network\'s interface' % ip)
    odd = [t for t in types if t not in OFFLOADABLE_ENCAPS]
    if odd:
        return CheckResult(
            'ovn-encap', subject, Status.WARNING,
            'external_ids:ovn-encap-type is %s: %s cannot be offloaded to '
            'the NIC (only %s). Fix: ovs-vsctl set Open_vSwitch . '
            'external_ids:ovn-encap-type=geneve'
            % (','.join(types), ', '.join(odd),
               ' and '.join(OFFLOADABLE_ENCAPS)), detail=owners[0])
    return CheckResult('ovn-encap', subject, Status.SUCCESS,
                       '%s tunnels from %s on %s'
                       % (','.join(types), ip, owners[0]), detail=owners[0])


def check_encap_offload(detected: mechanism_mod.Detected,
                        netdevs: netdev_mod.Netdevs,
                        ovs: ovsdb_mod.OvsdbReader,
                        uplinks: list[str]) -> CheckResult:
    """The tunnel leaves through the VFs' NIC, which can then offload it.

    :param uplinks: the switchdev uplinks of the host's VFs (from the VF
        checks); empty when no VF was found.
    """
    ip = detected.external_ids.get('ovn-encap-ip') or ''
    subject = 'ovn-encap-ip %s' % ip
    try:
        owners = netdevs.address_owners(ip) if ip else []
    except (exception.NetdevError, ValueError):
        owners = []
    if not owners:
        return CheckResult('ovn-encap-offload', subject, Status.FAILURE,
                           'no netdev holds the encap IP (see ovn-encap)')
    owner = owners[0]
    uplink = _uplink_of(owner, netdevs, ovs, uplinks)
    if uplink is None:
        return CheckResult(
            'ovn-encap-offload', subject, Status.WARNING,
            'the encap IP is on %s, which is not %s nor an OVS bridge '
            'holding one: vdpa ports\' tunnelled traffic leaves through '
            'another device and its encapsulation stays in software. '
            'Fix: put the tunnel IP on the switchdev uplink (or on an OVS '
            'bridge with the uplink as a port)'
            % (owner, ', '.join(uplinks) if uplinks
               else 'a switchdev uplink'))
    state = checks.check_tc_offload(uplink, netdevs, 'uplink')
    if not state.ok:
        return CheckResult('ovn-encap-offload', subject, state.status,
                           'tunnels leave through %s; %s'
                           % (uplink, state.message))
    return CheckResult(
        'ovn-encap-offload', subject, Status.SUCCESS,
        'tunnels leave through switchdev uplink %s%s, hw-tc-offload on'
        % (uplink, '' if owner == uplink else ' (via %s)' % owner),
        detail=uplink)


def _uplink_of(owner: str, netdevs: netdev_mod.Netdevs,
               ovs: ovsdb_mod.OvsdbReader, uplinks: list[str]) -> str | None:
    """The switchdev uplink ``owner`` sends through, or None.

    ``owner`` itself when it is one; else, when ``owner`` is an OVS bridge's
    internal port, that bridge's port that is one.
    """

    def is_uplink(name: str) -> bool:
        if uplinks:
            return name in uplinks
        port_name = netdevs.port_name(name)
        return (netdevs.switch_id(name) is not None and port_name is not None
                and netdev_mod.parse_port_name(port_name)[1] is None)

    if is_uplink(owner):
        return owner
    row = ovs.interface(owner)
    if row is None or row.bridge is None:
        return None
    for name in ovs.bridge_ports(row.bridge):
        if name != owner and is_uplink(name):
            return name
    return None


# ------------------------------------------------------------- per port
def check_installed(row: ovsdb_mod.InterfaceRow, subject: str,
                    port_id: str) -> CheckResult:
    """ovn-controller installed the port's flows (``ovn-installed``).

    :param row: the representor's Interface row, read by
        :func:`nova_vdpa.network.checks.check_programmed`.
    """
    if row.external_ids.get('ovn-installed') == 'true':
        return CheckResult('programmed', subject, Status.SUCCESS,
                           'ovn-installed: ovn-controller installed the '
                           "port's flows", detail='ovn-installed')
    return CheckResult(
        'programmed', subject, Status.WARNING,
        'no ovn-installed on Interface %s yet: ovn-controller has not '
        'claimed it (is logical port %s bound to this chassis, and '
        'ovn-controller connected?)' % (row.name, port_id))


def tunnel_view(row: ovsdb_mod.InterfaceRow) -> dict[str, object]:
    """A Geneve (or VXLAN) port of br-int, as the ports listing shows it."""
    chassis = row.port_external_ids.get('ovn-chassis-id', '')
    return {'name': row.name, 'type': row.type,
            'remote_ip': row.options.get('remote_ip'),
            'ofport': row.ofport,
            'chassis': chassis.partition('@')[0] or None}

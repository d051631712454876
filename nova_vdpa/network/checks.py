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

"""Is this host ready to offload vdpa ports? Checks an operator can act on.

Neutron's ``openvswitch`` mechanism driver binds a vdpa port ``vif_type=ovs``
and keeps it DOWN until the OVS agent sees the VF representor in br-int (a
valid ``ofport`` and ``external_ids`` ``iface-id`` and ``attached-mac``);
Nova waits 300 s for ``network-vif-plugged``. A host that is not ready
(eswitch in legacy mode, no representor, a netdev datapath) therefore fails
a boot after five minutes with nothing in the log. These functions say
first, each returning a :class:`CheckResult` whose message names the thing
and the fix.

For the driver (wired in :mod:`nova_vdpa.compute`):

* :func:`run_host_checks` (or :func:`host_summary` with an open
  :class:`~nova_vdpa.network.ovsdb.OvsdbReader`) at ``init_host``, logged
  with :func:`log_summary`;
* :func:`check_vf_ready` before allocating a port's device: raises
  :class:`~nova_vdpa.exception.OffloadNotReady` naming the VF and the fix
  when the PF is in legacy mode or the VF has no single representor;
* :func:`verify_plugged` after os-vif plugged the representor.

hw-offload off and TC offload off are warnings, not failures: traffic then
flows through the kernel datapath, slowly, but the port comes up.

ML2/OVN binds vdpa ports too, with no agent: ovn-controller claims the
representor by its ``iface-id`` and Neutron waits for its
``ovn-installed``. The mechanism is read from Open vSwitch
(:mod:`nova_vdpa.network.mechanism`), never configured; on an OVN chassis
the summary adds the checks of :mod:`nova_vdpa.network.ovn` (chassis
settings, ovn-controller's southbound connection, the encapsulation and
whether the NIC can offload it), the messages name OVN's fixes, and
:func:`check_mechanism_ready` refuses a port before allocation when
ovn-controller cannot claim it.
"""

import dataclasses
import enum
import logging
from typing import Iterable

from nova_vdpa import exception
from nova_vdpa.kernel import devlink as devlink_mod
from nova_vdpa.kernel import netdev as netdev_mod
from nova_vdpa.network import mechanism as mechanism_mod
from nova_vdpa.network import ovsdb as ovsdb_mod

DEFAULT_BRIDGE = 'br-int'


class Status(enum.IntEnum):
    """Same values as oslo.upgradecheck's ``Code`` (the exit status)."""

    SUCCESS = 0
    WARNING = 1
    FAILURE = 2


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One check: what it looked at, how it went, what to do.

    :ivar name: the check, ``hw-offload``, ``switchdev``...
    :ivar subject: what was checked: a VF, a PF, a bridge, a netdev.
    :ivar detail: a value found (the representor's name...), or None.
    """

    name: str
    subject: str
    status: Status
    message: str
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == Status.SUCCESS


def worst(results: Iterable[CheckResult]) -> Status:
    return max((r.status for r in results), default=Status.SUCCESS)


# ------------------------------------------------------------------ OVSDB
def check_hw_offload(ovs: ovsdb_mod.OvsdbReader) -> CheckResult:
    """``Open_vSwitch other_config:hw-offload`` is true."""
    value = ovs.other_config().get('hw-offload')
    if value == 'true':
        return CheckResult('hw-offload', 'Open_vSwitch', Status.SUCCESS,
                           'other_config:hw-offload is true')
    return CheckResult(
        'hw-offload', 'Open_vSwitch', Status.WARNING,
        'other_config:hw-offload is %s: vdpa ports work but their flows '
        'stay in software. Fix: ovs-vsctl set Open_vSwitch . '
        'other_config:hw-offload=true, then restart ovs-vswitchd'
        % ('unset' if value is None else repr(value)))


def check_integration_bridge(ovs: ovsdb_mod.OvsdbReader,
                             bridge: str = DEFAULT_BRIDGE,
                             mechanism: mechanism_mod.Mechanism =
                             mechanism_mod.Mechanism.OVS) -> CheckResult:
    """The integration bridge exists with the kernel (system) datapath."""
    ovn = mechanism is mechanism_mod.Mechanism.OVN
    dp = ovs.bridge_datapath_type(bridge)
    if dp is None:
        return CheckResult(
            'integration-bridge', bridge, Status.FAILURE,
            'bridge %s does not exist: %s' % (bridge, (
                'start ovn-controller (it creates it) or check '
                'external_ids:ovn-bridge' if ovn else
                'start neutron-openvswitch-agent (it creates it) or check '
                '[ovs] integration_bridge')))
    if dp not in ('', 'system'):
        return CheckResult(
            'integration-bridge', bridge, Status.FAILURE,
            'bridge %s has datapath_type %s: %s. Fix: %s and recreate %s'
            % (bridge, dp, (
                'vdpa ports need the kernel datapath (system)' if ovn else
                'Neutron binds vdpa ports on it as vhostuser, which vdpa '
                'cannot use'), (
                'set external_ids:ovn-bridge-datapath-type=system' if ovn
                else 'set [ovs] datapath_type = system for the OVS agent'),
                bridge))
    return CheckResult('integration-bridge', bridge, Status.SUCCESS,
                       'bridge %s uses the system datapath' % bridge)


def check_mechanism(detected: mechanism_mod.Detected) -> CheckResult:
    """Which mechanism the host runs (always a success: information)."""
    return CheckResult('mechanism', 'Open_vSwitch', Status.SUCCESS,
                       '%s (%s)' % (detected.mechanism.label,
                                    detected.evidence),
                       detail=detected.mechanism.value)


# ------------------------------------------------------- eswitch and VFs
def locate(vf_address: str, netdevs: netdev_mod.Netdevs
           ) -> tuple[CheckResult, netdev_mod.VfPort | None]:
    """Find the VF's PF and uplink; a failed result when there is none."""
    try:
        port = netdevs.locate_vf(vf_address)
    except exception.NetdevError as e:
        return CheckResult(
            'representor', vf_address, Status.FAILURE,
            '%s. Fix: put the PF in switchdev mode (devlink dev eswitch '
            'set pci/<PF> mode switchdev)' % e.message), None
    return CheckResult('uplink', vf_address, Status.SUCCESS,
                       'VF %d of %s, uplink %s' % (
                           port.vf_index, port.devlink_handle, port.uplink),
                       detail=port.uplink), port


def check_eswitch(port: netdev_mod.VfPort,
                  client: devlink_mod.DevlinkClient) -> CheckResult:
    """The VF's PF is in devlink eswitch mode ``switchdev``."""
    handle = port.devlink_handle
    fix = ('Fix: devlink dev eswitch set %s mode switchdev (with its VFs '
           'unbound from their drivers)' % handle)
    try:
        state = client.eswitch(handle)
    except exception.DevlinkPermissionDenied as e:
        return CheckResult('switchdev', handle, Status.WARNING,
                           '%s; run the check as root' % e.message)
    except exception.DevlinkError as e:
        return CheckResult('switchdev', handle, Status.FAILURE,
                           '%s. %s' % (e.message, fix))
    if not state.is_switchdev:
        return CheckResult(
            'switchdev', handle, Status.FAILURE,
            'PF %s (VF %s) is in eswitch mode %s: its VFs have no '
            'representors for Open vSwitch. %s'
            % (handle, port.vf_address, state.mode_name, fix))
    return CheckResult('switchdev', handle, Status.SUCCESS,
                       'PF %s is in switchdev mode' % handle)


def check_representor(port: netdev_mod.VfPort,
                      netdevs: netdev_mod.Netdevs) -> CheckResult:
    """The VF has exactly one representor; ``detail`` is its name."""
    found = netdevs.representors(port)
    if len(found) == 1:
        return CheckResult('representor', port.vf_address, Status.SUCCESS,
                           'representor %s' % found[0], detail=found[0])
    if not found:
        return CheckResult(
            'representor', port.vf_address, Status.FAILURE,
            'VF %s (VF %d of %s) has no representor netdev with '
            "uplink %s's phys_switch_id. Fix: check the eswitch is in "
            'switchdev mode and that udev did not rename or remove it'
            % (port.vf_address, port.vf_index, port.devlink_handle,
               port.uplink))
    return CheckResult(
        'representor', port.vf_address, Status.FAILURE,
        'VF %s has %d representors (%s): os-vif would plug the first one. '
        'Fix: check phys_port_name of these netdevs'
        % (port.vf_address, len(found), ', '.join(found)))


def check_tc_offload(ifname: str, netdevs: netdev_mod.Netdevs,
                     role: str) -> CheckResult:
    """``hw-tc-offload`` is on for ``ifname`` (an uplink or representor)."""
    try:
        state = netdevs.hw_tc_offload(ifname)
    except exception.NetdevError as e:
        return CheckResult('hw-tc-offload', ifname, Status.FAILURE,
                           e.message)
    if state:
        return CheckResult('hw-tc-offload', ifname, Status.SUCCESS,
                           'hw-tc-offload is on for %s %s' % (role, ifname))
    return CheckResult(
        'hw-tc-offload', ifname, Status.WARNING,
        '%s %s has hw-tc-offload %s: its flows cannot go to hardware. '
        'Fix: ethtool -K %s hw-tc-offload on'
        % (role, ifname, 'unsupported' if state is None else 'off', ifname))


def check_vf(vf_address: str, netdevs: netdev_mod.Netdevs,
             client: devlink_mod.DevlinkClient,
             tc_offload: bool = True) -> list[CheckResult]:
    """Every check of one VF: uplink, switchdev, representor, TC offload."""
    found, port = locate(vf_address, netdevs)
    if port is None:
        return [found]
    results = [check_eswitch(port, client), check_representor(port, netdevs)]
    if tc_offload:
        results.append(check_tc_offload(port.uplink, netdevs, 'uplink'))
        if results[1].detail:
            results.append(check_tc_offload(results[1].detail, netdevs,
                                            'representor'))
    return results


def check_vf_ready(vf_address: str,
                   netdevs: netdev_mod.Netdevs | None = None,
                   client: devlink_mod.DevlinkClient | None = None) -> str:
    """Before allocation: the VF can be plugged into Open vSwitch.

    :returns: the VF's representor.
    :raises: OffloadNotReady naming the VF and the fix: the PF is in
        legacy mode, or the VF has no single representor.
    """
    netdevs = netdevs or netdev_mod.Netdevs()
    own_client = client is None
    try:
        if client is None:
            client = devlink_mod.DevlinkClient()
        results = check_vf(vf_address, netdevs, client, tc_offload=False)
    except exception.DevlinkError as e:
        raise exception.OffloadNotReady(vf_address=vf_address,
                                        reason=e.message)
    finally:
        if own_client and client is not None:
            client.close()
    for result in results:
        if result.status == Status.FAILURE:
            raise exception.OffloadNotReady(vf_address=vf_address,
                                            reason=result.message)
    return [r for r in results if r.name == 'representor'][0].detail or ''


# ------------------------------------------------------- before a port
def check_mechanism_ready(ovs: ovsdb_mod.OvsdbReader,
                          ovn_rundir: str | None = None,
                          bridge: str = DEFAULT_BRIDGE) -> list[CheckResult]:
    """What the mechanism needs before any port can come up here.

    ML2/OVS: nothing beyond the VF (the agent's state is Neutron's to
    report). ML2/OVN: the chassis is configured and ovn-controller runs
    and is connected: otherwise no port is claimed and Nova waits 300 s.
    """
    from nova_vdpa.network import ovn  # ovn imports this module

    detected = mechanism_mod.detect(ovs, bridge)
    if not detected.is_ovn:
        return []
    return [ovn.check_chassis(detected),
            ovn.check_controller(ovn_rundir,
                                 detected.external_ids.get('ovn-remote'))]


# ----------------------------------------------------------- after plug
def verify_plugged(ovs: ovsdb_mod.OvsdbReader, port_id: str, mac: str,
                   representor: str,
                   bridge: str = DEFAULT_BRIDGE,
                   mechanism: mechanism_mod.Mechanism =
                   mechanism_mod.Mechanism.OVS) -> CheckResult:
    """The representor's Interface row is what the mechanism needs.

    The OVS agent takes a row for a VIF only with a valid ``ofport`` and
    ``external_ids`` ``iface-id`` and ``attached-mac``; ovn-controller
    claims it by ``iface-id`` (os-vif writes the same four keys for
    both). Otherwise the port stays DOWN and Nova's wait for
    ``network-vif-plugged`` times out.
    """
    row = ovs.interface(representor)
    subject = '%s (port %s)' % (representor, port_id)
    if row is None:
        return CheckResult(
            'plugged', subject, Status.FAILURE,
            'representor %s has no Interface row: os-vif did not plug it '
            'into %s (see the os-vif error in the nova-compute log)'
            % (representor, bridge))
    problems = []
    if row.bridge != bridge:
        problems.append('it is on bridge %s, not %s' % (row.bridge, bridge))
    if row.ofport is None or row.ofport < 0:
        problems.append('ofport is %s (ovs-vswitchd could not add the '
                        'netdev: %s)' % (row.ofport, row.error or 'no error'))
    iface_id = row.external_ids.get('iface-id')
    if iface_id != port_id:
        problems.append('external_ids:iface-id is %s, not the port %s'
                        % (iface_id, port_id))
    attached = row.external_ids.get('attached-mac')
    if (attached or '').lower() != mac.lower():
        problems.append('external_ids:attached-mac is %s, not the '
                        "port's %s" % (attached, mac))
    if problems:
        return CheckResult(
            'plugged', subject, Status.FAILURE,
            'Interface %s: %s; %s port %s' % (
                representor, '; '.join(problems),
                'ovn-controller will not claim'
                if mechanism is mechanism_mod.Mechanism.OVN
                else 'the OVS agent will not report', port_id)
            + ('' if mechanism is mechanism_mod.Mechanism.OVN else ' up'))
    if mechanism is mechanism_mod.Mechanism.OVN:
        return CheckResult('plugged', subject, Status.SUCCESS,
                           'Interface %s in %s, ofport %s, iface-id %s'
                           % (representor, bridge, row.ofport, port_id),
                           detail=str(row.ofport))
    return CheckResult('plugged', subject, Status.SUCCESS,
                       'Interface %s in %s, ofport %s, tag %s'
                       % (representor, bridge, row.ofport, row.tag),
                       detail=str(row.ofport))


#: the OVS agent's VLAN for ports it could not wire (``DEAD_VLAN_TAG``)
DEAD_VLAN_TAG = 4095


def check_programmed(ovs: ovsdb_mod.OvsdbReader, port_id: str,
                     representor: str,
                     mechanism: mechanism_mod.Mechanism =
                     mechanism_mod.Mechanism.OVS) -> CheckResult:
    """Whether the mechanism says the port's datapath is programmed.

    ML2/OVN: ovn-controller's ``external_ids:ovn-installed="true"`` on
    the Interface. ML2/OVS: the agent's local VLAN ``tag`` on the Port
    (4095, its dead VLAN, means it could not wire the port).
    """
    row = ovs.interface(representor)
    subject = '%s (port %s)' % (representor, port_id)
    if row is None:
        return CheckResult('programmed', subject, Status.FAILURE,
                           'representor %s has no Interface row'
                           % representor)
    if mechanism is mechanism_mod.Mechanism.OVN:
        from nova_vdpa.network import ovn  # ovn imports this module
        return ovn.check_installed(row, subject, port_id)
    if row.tag is None:
        return CheckResult('programmed', subject, Status.WARNING,
                           'no local VLAN tag yet: the OVS agent has not '
                           'wired the port')
    if row.tag == DEAD_VLAN_TAG:
        return CheckResult('programmed', subject, Status.FAILURE,
                           'tag %d: the OVS agent could not wire the port '
                           '(see its log)' % DEAD_VLAN_TAG)
    return CheckResult('programmed', subject, Status.SUCCESS,
                       'the OVS agent set local VLAN tag %d' % row.tag,
                       detail='tag %d' % row.tag)


# --------------------------------------------------------------- summary
def host_summary(vf_addresses: Iterable[str],
                 ovs: ovsdb_mod.OvsdbReader | None,
                 netdevs: netdev_mod.Netdevs | None = None,
                 client: devlink_mod.DevlinkClient | None = None,
                 bridge: str = DEFAULT_BRIDGE,
                 ovs_error: str | None = None,
                 ovn_rundir: str | None = None) -> list[CheckResult]:
    """Every check for this host: OVS once, then each VF (PFs once).

    The mechanism (ML2/OVS or ML2/OVN) is read from OVSDB; an OVN chassis
    gets the OVN checks too, after the VFs (the encapsulation's offload
    depends on their uplinks).

    :param ovs: a reader, or None when OVSDB is unreachable (reported).
    :param ovs_error: why ``ovs`` is None, for the report.
    :param bridge: the OVS agent's integration bridge (an OVN chassis
        names its own, ``external_ids:ovn-bridge``).
    :param ovn_rundir: ovn-controller's run folder (default
        ``$OVN_RUNDIR`` or /run/ovn).
    """
    from nova_vdpa.network import ovn  # ovn imports this module

    netdevs = netdevs or netdev_mod.Netdevs()
    results: list[CheckResult] = []
    detected = None
    if ovs is None:
        results.append(CheckResult(
            'ovsdb', bridge, Status.FAILURE,
            'Open vSwitch database unreachable%s: start ovsdb-server and '
            'ovs-vswitchd, or fix [os_vif_ovs] ovsdb_connection'
            % (' (%s)' % ovs_error if ovs_error else '')))
    else:
        detected = mechanism_mod.detect(ovs, bridge)
        results += [check_mechanism(detected), check_hw_offload(ovs),
                    check_integration_bridge(ovs, detected.bridge,
                                             detected.mechanism)]
    own_client = client is None
    uplinks: list[str] = []
    try:
        if client is None:
            client = devlink_mod.DevlinkClient()
        seen: set[str] = set()
        for vf in sorted(vf_addresses):
            port = locate(vf, netdevs)[1]
            if port is not None and port.uplink not in uplinks:
                uplinks.append(port.uplink)
            for result in check_vf(vf, netdevs, client):
                if result.subject in seen and result.name != 'representor':
                    continue  # a PF or uplink already checked
                seen.add(result.subject)
                results.append(result)
    except exception.DevlinkNotAvailable as e:
        results.append(CheckResult('switchdev', '-', Status.FAILURE,
                                   e.message))
    finally:
        if own_client and client is not None:
            client.close()
    if ovs is not None and detected is not None and detected.is_ovn:
        results += [
            ovn.check_chassis(detected),
            ovn.check_controller(ovn_rundir,
                                 detected.external_ids.get('ovn-remote')),
            ovn.check_encap(detected, netdevs),
            ovn.check_encap_offload(detected, netdevs, ovs, uplinks)]
    return results


def run_host_checks(vf_addresses: Iterable[str],
                    ovsdb_connection: str = ovsdb_mod.DEFAULT_CONNECTION,
                    bridge: str = DEFAULT_BRIDGE,
                    timeout: float = 5.0,
                    ovn_rundir: str | None = None) -> list[CheckResult]:
    """:func:`host_summary` with its own OVSDB connection (for init_host).

    :param ovsdb_connection: os-vif's ``[os_vif_ovs] ovsdb_connection``.
    :param timeout: seconds to connect to OVSDB and for each read; an
        absent server costs at most this.
    """
    ovs_error = None
    try:
        ovs: ovsdb_mod.OvsdbReader | None = ovsdb_mod.OvsdbReader(
            ovsdb_connection, timeout=timeout)
    except exception.OvsdbUnavailable as e:
        ovs, ovs_error = None, e.message
    try:
        return host_summary(vf_addresses, ovs, bridge=bridge,
                            ovs_error=ovs_error, ovn_rundir=ovn_rundir)
    finally:
        if ovs is not None:
            ovs.close()


def log_summary(results: Iterable[CheckResult],
                log: logging.Logger | logging.LoggerAdapter) -> Status:
    """One line when all is well; one line per problem otherwise."""
    results = list(results)
    bad = [r for r in results if not r.ok]
    for r in bad:
        level = logging.ERROR if r.status == Status.FAILURE else \
            logging.WARNING
        log.log(level, 'vdpa offload check %s (%s): %s',
                r.name, r.subject, r.message)
    if not bad:
        log.info('vdpa offload checks passed (%d checks)', len(results))
    return worst(results)

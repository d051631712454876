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

"""Datapath flows of a representor, read from ovs-vswitchd's unixctl socket.

``ovs-appctl dpctl/dump-flows`` is a unixctl request to ovs-vswitchd; the
``ovs`` Python library (which ovsdbapp depends on) speaks that protocol
(:class:`ovs.unixctl.client.UnixctlClient`), so no subprocess is needed.
We ask with ``-m`` (verbose): only then does vswitchd print port names
instead of datapath port numbers and the ``offloaded:`` and ``dp:``
fields. ``type=`` selects ``ovs`` (kernel datapath), ``tc`` (flows in TC,
in hardware or not), ``offloaded`` (in hardware) or ``non-offloaded``.

Seen on the test bed (OVS 3.1, netdevsim representors, ``hw-offload=true``):
netdevsim offloads only BPF, so a flower flow on its representor is listed
under ``type=tc`` as ``..., used:never, dp:tc, actions:br-int`` with no
``offloaded:`` field, and ``type=offloaded`` stays empty. vswitchd prints
``offloaded:yes`` only for a flow the NIC holds (mlx5); that form is
tested against a recorded sample only. A flow is therefore "offloaded"
exactly when vswitchd says so, and "no" whenever it names the layer
without saying so.
"""

import dataclasses
import os
import re
from typing import Any

from nova_vdpa import exception

#: where packaged Open vSwitch keeps its pid files and control sockets
DEFAULT_RUNDIR = '/run/openvswitch'
DUMP_TYPES = ('ovs', 'tc', 'offloaded', 'non-offloaded')

_IN_PORT = re.compile(r'(?:^|[,\s])in_port\(([^)]*)\)')
_FIELD = re.compile(r'^([a-z_-]+):(.*)$')
_ITEMS = ('ufid', 'packets', 'bytes', 'used', 'flags', 'offloaded', 'dp',
          'dp-extra-info')


@dataclasses.dataclass(frozen=True)
class Flow:
    """One datapath flow as vswitchd prints it.

    :ivar in_port: the ``in_port(...)`` of the match (a name with ``-m``).
    :ivar match: the flow key and mask, as printed.
    :ivar actions: the actions, as printed.
    :ivar dp: the datapath layer holding it: ``ovs`` or ``tc``; None when
        vswitchd did not say.
    :ivar offloaded: ``yes`` / ``partial`` when vswitchd says so; ``no``
        when it names the layer (``dp:``) without; None when it says
        neither (a dump without ``-m``).
    """

    in_port: str | None
    match: str
    actions: str
    packets: int | None
    bytes: int | None
    used: str | None
    dp: str | None
    offloaded: str | None
    raw: str

    def touches(self, ifname: str) -> bool:
        """Whether the flow enters or leaves through ``ifname``."""
        if self.in_port == ifname:
            return True
        return ifname in re.split(r'[,()=]', self.actions)


def parse_flow(line: str) -> Flow | None:
    """Parse one line of ``dpctl/dump-flows -m``; None for other lines."""
    line = line.strip()
    head, sep, actions = line.partition(', actions:')
    if not sep:
        if not line.startswith('actions:') and ' actions:' not in line:
            return None
        head, _, actions = line.rpartition('actions:')
    # The match and the ", key:value" items around it (ufid before,
    # statistics and datapath layer after); the match itself holds no ", "
    # (its fields are joined by "," alone).
    fields: dict[str, str] = {}
    match_parts = []
    for part in head.split(', '):
        m = _FIELD.match(part.strip())
        if m and m.group(1) in _ITEMS:
            fields[m.group(1)] = m.group(2)
        else:
            match_parts.append(part)
    match = ', '.join(match_parts)
    in_port = _IN_PORT.search(match)
    offloaded = fields.get('offloaded')
    if offloaded is None and 'dp' in fields:
        offloaded = 'no'

    def _int(key: str) -> int | None:
        try:
            return int(fields[key])
        except (KeyError, ValueError):
            return None

    return Flow(in_port=in_port.group(1) if in_port else None,
                match=match, actions=actions.strip(),
                packets=_int('packets'), bytes=_int('bytes'),
                used=fields.get('used'), dp=fields.get('dp'),
                offloaded=offloaded, raw=line)


def parse_dump(text: str) -> list[Flow]:
    """Every flow of a ``dpctl/dump-flows -m`` answer."""
    flows = (parse_flow(line) for line in text.splitlines())
    return [f for f in flows if f is not None]


def control_socket(rundir: str | None = None) -> str:
    """ovs-vswitchd's unixctl socket: ``<rundir>/ovs-vswitchd.<pid>.ctl``.

    :param rundir: OVS's run folder; default ``$OVS_RUNDIR`` or
        /run/openvswitch.
    :raises: OvsUnixctlError when vswitchd's pid file is missing.
    """
    rundir = rundir or os.environ.get('OVS_RUNDIR') or DEFAULT_RUNDIR
    return daemon_socket(rundir, 'ovs-vswitchd')


def daemon_socket(rundir: str, daemon: str) -> str:
    """An OVS-style daemon's unixctl socket: ``<rundir>/<daemon>.<pid>.ctl``.

    ovs-vswitchd, ovn-controller and the other daemons of the OVS family
    write ``<daemon>.pid`` and listen on that socket in their run folder.

    :raises: OvsUnixctlError when the pid file is missing or unreadable.
    """
    pidfile = os.path.join(rundir, '%s.pid' % daemon)
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError) as e:
        raise exception.OvsUnixctlError(
            command='-', target=pidfile,
            reason='%s is not running here (%s)' % (daemon, e))
    return os.path.join(rundir, '%s.%d.ctl' % (daemon, pid))


def transact(target: str, command: str, args: list[str]) -> str:
    """One unixctl request; what ``ovs-appctl`` would print.

    :param target: the control socket's absolute path.
    :raises: OvsUnixctlError
    """
    # Imported here: the ovs library is slow to import in the test bed.
    from ovs.unixctl import client as unixctl  # type: ignore[import-untyped]

    error, cl = unixctl.UnixctlClient.create(target)
    if error:
        raise exception.OvsUnixctlError(command=command, target=target,
                                        reason=os.strerror(error))
    try:
        error, failure, result = cl.transact(command, args)
    finally:
        cl.close()
    if error:
        raise exception.OvsUnixctlError(command=command, target=target,
                                        reason=os.strerror(error))
    if failure is not None:
        raise exception.OvsUnixctlError(command=command, target=target,
                                        reason=str(failure).strip())
    return str(result)


def dump_flows(target: str, dump_type: str) -> list[Flow]:
    """``dpctl/dump-flows -m type=<dump_type>``, parsed.

    :raises: OvsUnixctlError; ValueError for an unknown type.
    """
    if dump_type not in DUMP_TYPES:
        raise ValueError('dump type %r is not one of %s'
                         % (dump_type, ', '.join(DUMP_TYPES)))
    return parse_dump(transact(target, 'dpctl/dump-flows',
                               ['-m', 'type=%s' % dump_type]))


def representor_flows(target: str, ifname: str,
                      types: tuple[str, ...] = ('tc', 'ovs')
                      ) -> list[Flow]:
    """The flows through ``ifname`` in each datapath layer asked for.

    ``tc`` lists offloaded and not offloaded TC flows alike; ``ovs`` the
    kernel datapath's. Together they are every flow of the representor.
    """
    found: list[Flow] = []
    for dump_type in types:
        found.extend(f for f in dump_flows(target, dump_type)
                     if f.touches(ifname))
    return found


def as_dict(flow: Flow) -> dict[str, Any]:
    return dataclasses.asdict(flow)


def summary(flow: Flow) -> str:
    """One line for a table: layer, offload state, counters, path."""
    return 'dp:%s offloaded:%s packets:%s %s -> %s' % (
        flow.dp or '?', flow.offloaded or '?',
        '?' if flow.packets is None else flow.packets,
        flow.in_port or '?', flow.actions)

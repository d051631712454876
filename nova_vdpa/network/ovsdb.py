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

"""Read-only view of the Open vSwitch database through ovsdbapp's IDL.

What the offload checks and the status command need, and nothing else:
``Open_vSwitch other_config`` and ``external_ids`` (where an OVN chassis
keeps its settings, :mod:`nova_vdpa.network.mechanism`), a bridge's
``datapath_type``, an Interface row with its Port's VLAN ``tag``,
``external_ids`` and bridge, and a bridge's ports and tunnel ports.
Everything is read with ovsdbapp's native IDL, as os-vif and the Neutron
OVS agent do; nothing shells out to ``ovs-vsctl``.

ovsdbapp keeps its connection in a class attribute of the API class, so
two API objects of one class share the first connection ever made (a
second database, or os-vif's in the same process, would silently be read
through it). :func:`_api_class` makes one subclass per reader.
"""

import dataclasses
import os
from typing import Any

from nova_vdpa import exception

#: os-vif's and Neutron's default ([os_vif_ovs] ovsdb_connection)
DEFAULT_CONNECTION = 'unix:/run/openvswitch/db.sock'
_TABLES = ('Open_vSwitch', 'Bridge', 'Port', 'Interface')
TUNNEL_TYPES = ('vxlan', 'geneve', 'gre')


@dataclasses.dataclass(frozen=True)
class InterfaceRow:
    """An Interface row and what surrounds it.

    :ivar ofport: OpenFlow port number; -1 or None when vswitchd could not
        add the netdev (the agent ignores such a row).
    :ivar bridge: the bridge whose Port holds it; None if none does.
    :ivar tag: the Port's VLAN tag (the agent's local VLAN), or None.
    :ivar port_external_ids: the Port's ``external_ids``; ovn-controller
        names a tunnel's remote chassis there (``ovn-chassis-id``).
    """

    name: str
    type: str
    ofport: int | None
    external_ids: dict[str, str]
    options: dict[str, str]
    error: str | None
    bridge: str | None
    tag: int | None
    port_external_ids: dict[str, str] = dataclasses.field(
        default_factory=dict)


def _api_class() -> type:
    # Imported here: ovsdbapp pulls in the ovs library (seconds in the bed)
    # and only callers that talk to OVS should pay for it.
    from ovsdbapp.schema.open_vswitch import impl_idl

    # A fresh class attribute: see the module docstring.
    return type('NovaVdpaOvsdb', (impl_idl.OvsdbIdl,),
                {'_ovsdb_connection': None})


def _single(value: Any) -> Any:
    """An optional OVSDB column comes back as a list of 0 or 1 values."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _probe(connection: str, timeout: float) -> None:
    """Connect to each remote of ``connection`` within ``timeout`` seconds.

    :raises: OvsdbUnavailable naming the last remote's error when none
        accepts the connection.
    """
    from ovs import stream  # type: ignore[import-untyped]

    error = 0
    for remote in connection.split(','):
        error, strm = stream.Stream.open_block(
            stream.Stream.open(remote.strip()), int(timeout * 1000))
        if strm is not None:
            strm.close()
        if not error:
            return
    raise exception.OvsdbUnavailable(
        connection=connection,
        reason='cannot connect within %.0f s: %s'
        % (timeout, os.strerror(error)))


class OvsdbReader:
    """A connection to one ovsdb-server, read-only.

    :param connection: ``unix:<path>`` or ``tcp:<ip>:<port>``.
    :param timeout: seconds to connect and for each read.
    :raises: OvsdbUnavailable when the server cannot be reached.
    """

    def __init__(self, connection: str = DEFAULT_CONNECTION,
                 timeout: float = 5.0) -> None:
        self.connection = connection
        if connection.startswith('unix:') and not os.path.exists(
                connection[len('unix:'):]):
            # Checked first: ovsdbapp would log an error and retry.
            raise exception.OvsdbUnavailable(
                connection=connection,
                reason='no such socket (is ovsdb-server running?)')
        from ovsdbapp.backend.ovs_idl import connection as ovs_conn
        from ovsdbapp.backend.ovs_idl import idlutils

        # ovsdbapp's schema fetch connects with no deadline (a TCP
        # remote that drops packets blocks it for minutes) and logs an
        # error of its own when the connection is refused: connect once
        # first, bounded by ``timeout``.
        _probe(connection, timeout)
        try:
            helper = idlutils.get_schema_helper(connection, 'Open_vSwitch')
            for table in _TABLES:
                helper.register_table(table)
            idl = ovs_conn.OvsdbIdl(connection, helper)
            self._conn = ovs_conn.Connection(idl=idl, timeout=timeout)
            self.api = _api_class()(self._conn)
        except Exception as e:
            # ovsdbapp raises bare Exception and its own timeouts here.
            raise exception.OvsdbUnavailable(
                connection=connection, reason=str(e) or type(e).__name__)

    def close(self) -> None:
        """Stop the IDL thread."""
        self._conn.stop(timeout=5)

    def __enter__(self) -> 'OvsdbReader':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _run(self, command: Any) -> Any:
        try:
            return command.execute(check_error=True, log_errors=False)
        except Exception as e:
            raise exception.OvsdbUnavailable(
                connection=self.connection, reason=str(e) or repr(e))

    # --------------------------------------------------------------- reads
    def other_config(self) -> dict[str, str]:
        """``Open_vSwitch . other_config``."""
        return dict(self._run(self.api.db_get(
            'Open_vSwitch', '.', 'other_config')))

    def external_ids(self) -> dict[str, str]:
        """``Open_vSwitch . external_ids`` (an OVN chassis's settings)."""
        return dict(self._run(self.api.db_get(
            'Open_vSwitch', '.', 'external_ids')))

    def bridge_datapath_type(self, bridge: str) -> str | None:
        """The bridge's ``datapath_type`` ('' means system); None: absent."""
        rows = self._run(self.api.db_find(
            'Bridge', ('name', '=', bridge), columns=['datapath_type']))
        return rows[0]['datapath_type'] if rows else None

    def interface(self, name: str) -> InterfaceRow | None:
        """The Interface row named ``name``, or None."""
        rows = self._run(self.api.db_find(
            'Interface', ('name', '=', name),
            columns=['name', 'type', 'ofport', 'external_ids', 'options',
                     'error']))
        if not rows:
            return None
        row = rows[0]
        ports = self._run(self.api.db_find(
            'Port', ('name', '=', name), columns=['tag', 'external_ids']))
        bridge = self._run(self.api.iface_to_br(name))
        return InterfaceRow(
            name=row['name'], type=row['type'],
            ofport=_single(row['ofport']),
            external_ids=dict(row['external_ids']),
            options=dict(row['options']), error=_single(row['error']),
            bridge=bridge or None,
            tag=_single(ports[0]['tag']) if ports else None,
            port_external_ids=dict(ports[0]['external_ids']) if ports
            else {})

    def bridge_ports(self, bridge: str) -> list[str]:
        """The names of the bridge's interfaces; empty when it is absent."""
        if self.bridge_datapath_type(bridge) is None:
            return []
        return sorted(self._run(self.api.list_ifaces(bridge)))

    def tunnel_ports(self, bridge: str) -> list[InterfaceRow]:
        """The bridge's tunnel interfaces (VXLAN, Geneve, GRE)."""
        if self.bridge_datapath_type(bridge) is None:
            return []
        names = self._run(self.api.list_ifaces(bridge))
        rows = [self.interface(n) for n in sorted(names)]
        return [r for r in rows if r is not None and r.type in TUNNEL_TYPES]

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

"""Which Neutron mechanism wires this host's ports: ML2/OVS or ML2/OVN.

Read from Open vSwitch itself, never configured: an OVN chassis keeps its
settings on the ``Open_vSwitch`` row's ``external_ids`` (``ovn-remote``,
``ovn-encap-type``, ``ovn-encap-ip``, ``system-id``, and ``ovn-bridge``
when the integration bridge is not br-int), where ovn-controller reads
them; the Neutron OVS agent writes none of these. A row with any of the
``ovn-`` keys is an OVN chassis (one with some missing is a broken one,
which the OVN checks then report); a row with none is ML2/OVS.

Seen with OVN 23.03 on OVS 3.1 (Debian 12) and OVN 25.03 on OVS 3.5
(Debian 13), in the test bed: ovn-controller creates
``br-int`` itself (``fail_mode: secure``, the datapath type from
``external_ids:ovn-bridge-datapath-type``), claims each Interface whose
``external_ids:iface-id`` names a logical port, sets
``external_ids:ovn-installed="true"`` (and ``ovn-installed-ts``) on it once
the port's flows are in ovs-vswitchd, and adds one Geneve port per remote
chassis to br-int (``ovn-<chassis[:5]>-0``, remote chassis named in the
Port's ``external_ids:ovn-chassis-id`` as ``<chassis>@<ip>``). There is no
br-tun.
"""

import dataclasses
import enum

from nova_vdpa.network import ovsdb as ovsdb_mod

DEFAULT_BRIDGE = 'br-int'
#: the Open_vSwitch external_ids an OVN chassis is configured with
OVN_KEYS = ('ovn-remote', 'ovn-encap-type', 'ovn-encap-ip')


class Mechanism(str, enum.Enum):
    """Neutron's ML2 mechanism driver for this host's ports."""

    OVS = 'openvswitch'
    OVN = 'ovn'

    @property
    def label(self) -> str:
        return 'ML2/OVN' if self is Mechanism.OVN else 'ML2/OVS'


@dataclasses.dataclass(frozen=True)
class Detected:
    """What the host runs, and why we think so.

    :ivar bridge: the integration bridge: ``external_ids:ovn-bridge`` on
        an OVN chassis, else the caller's (``br-int`` by default).
    :ivar evidence: the OVSDB facts the decision rests on, for messages.
    """

    mechanism: Mechanism
    bridge: str
    evidence: str
    external_ids: dict[str, str]

    @property
    def is_ovn(self) -> bool:
        return self.mechanism is Mechanism.OVN


def detect(ovs: ovsdb_mod.OvsdbReader,
           bridge: str = DEFAULT_BRIDGE) -> Detected:
    """Read the mechanism from the ``Open_vSwitch`` row.

    :param bridge: the integration bridge the caller was configured with
        (the OVS agent's; OVN names its own in ``ovn-bridge``).
    :raises: OvsdbUnavailable
    """
    ids = ovs.external_ids()
    found = [k for k in OVN_KEYS if ids.get(k)]
    if found:
        return Detected(
            Mechanism.OVN, ids.get('ovn-bridge') or bridge,
            'Open_vSwitch external_ids has %s' % ', '.join(
                '%s=%s' % (k, ids[k]) for k in found), ids)
    return Detected(Mechanism.OVS, bridge,
                    'Open_vSwitch external_ids has no %s'
                    % '/'.join(OVN_KEYS), ids)

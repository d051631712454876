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

"""Network devices of a switchdev NIC: uplink, VF representors, TC offload.

A VF's traffic reaches Open vSwitch through its *representor*, a netdev of
the PF's eswitch. The walk is the one os-vif's ovs plugin makes
(``vif_plug_ovs.linux_net``: ``get_vf_num_by_pci_address``,
``get_ifname_by_pci_address(pf_interface=True, switchdev=True)``,
``get_representor_port``):

1. the VF's PCI sysfs ``physfn`` gives the PF and ``virtfnN`` the VF index;
2. the PF's uplink is the netdev under ``/sys/bus/pci/devices/<PF>/net/``
   with a readable ``phys_switch_id``;
3. a representor is a netdev with the uplink's ``phys_switch_id`` whose
   ``phys_port_name`` names the VF: ``pfXvfY`` (X must be the PF's PCI
   function), ``vfY``, or a bare number on old drivers.

We cannot call os-vif's helpers for this: they read ``/sys`` only (no root
to test against), ``get_representor_port`` stops at the first match (we
must see "exactly one"), and it needs the PF's PCI function, which a
non-PCI PF such as netdevsim's has not. Step 1 and 2 (:meth:`locate_vf`)
are kept apart from step 3 (:meth:`representors`) so the test bed can supply
the PCI part that netdevsim cannot give and check step 3 on real netdevs.

Representor names are never kept: seen on the bed (netdevsim, no udev),
switching the eswitch to legacy and back recreates the representors and
the uplink under new ``ethN`` names; udev's names on a real host are
stable only as long as its rules are.

``hw-tc-offload`` is read with pyroute2's ethtool ioctl support (the
``ETHTOOL_GFEATURES`` request ``ethtool -k`` makes); who holds an IP
address (an OVN chassis's tunnel IP) with an rtnetlink address dump (what
``ip -j addr`` prints).

Only the standard library and pyroute2 are imported here.
"""

import dataclasses
import errno
import ipaddress
import os
import re

from nova_vdpa import exception
from nova_vdpa.kernel import sysfs as sysfs_mod

#: ethtool's name of the TC offload feature
HW_TC_OFFLOAD = 'hw-tc-offload'

# The same forms os-vif accepts (vif_plug_ovs.linux_net INT_RE/VF_RE/PF_RE).
_BARE_VF = re.compile(r'^(\d+)$')
_VF = re.compile(r'vf(\d+)', re.IGNORECASE)
_PF = re.compile(r'pf(\d+)', re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class VfPort:
    """Where a VF sits on its NIC's eswitch.

    :ivar vf_address: the VF's PCI address (the binding's ``pci_slot``).
    :ivar pf_bus: the PF's devlink bus, ``pci``.
    :ivar pf_name: the PF's device name on that bus, ``0000:08:00.0``.
    :ivar vf_index: N of the PF's ``virtfnN``.
    :ivar pf_function: the PF's PCI function number (what ``pfX`` in a
        representor's ``phys_port_name`` must equal); None when unknown.
    :ivar uplink: the PF's switchdev uplink netdev.
    """

    vf_address: str
    pf_bus: str
    pf_name: str
    vf_index: int
    pf_function: int | None
    uplink: str

    @property
    def devlink_handle(self) -> str:
        return '%s/%s' % (self.pf_bus, self.pf_name)


def parse_port_name(phys_port_name: str) -> tuple[int | None, int | None]:
    """``(pf, vf)`` numbers in a representor's ``phys_port_name``.

    ``pf0vf3`` -> (0, 3); ``vf3`` -> (None, 3); ``3`` -> (None, 3); an
    uplink's ``p0`` or ``pf0`` -> (.., None): not a VF representor.
    """
    bare = _BARE_VF.search(phys_port_name)
    if bare:
        return None, int(bare.group(1))
    vf = _VF.search(phys_port_name)
    pf = _PF.search(phys_port_name)
    return (int(pf.group(1)) if pf else None,
            int(vf.group(1)) if vf else None)


class Netdevs:
    """Netdev facts from sysfs and ethtool, under a sysfs root.

    :param sys_root: where sysfs is mounted (tests use a folder).
    """

    def __init__(self, sys_root: str = '/sys') -> None:
        self.sys_root = sys_root
        self.class_net = os.path.join(sys_root, 'class', 'net')

    def _read(self, ifname: str, attr: str) -> str | None:
        """A netdev attribute; None when the netdev or the value is absent.

        ``phys_switch_id`` and ``phys_port_name`` exist on every netdev but
        answer EOPNOTSUPP when its driver has no switch port.
        """
        try:
            with open(os.path.join(self.class_net, ifname, attr)) as f:
                value = f.read().strip()
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV,
                           errno.EINVAL):
                return None
            raise exception.NetdevError(ifname=ifname,
                                        reason='reading %s: %s' % (attr, e))
        return value or None

    def exists(self, ifname: str) -> bool:
        return os.path.isdir(os.path.join(self.class_net, ifname))

    def names(self) -> list[str]:
        """Every netdev of the network namespace."""
        try:
            return sorted(os.listdir(self.class_net))
        except OSError as e:
            raise exception.NetdevError(ifname='-', reason=str(e))

    def switch_id(self, ifname: str) -> str | None:
        return self._read(ifname, 'phys_switch_id')

    def port_name(self, ifname: str) -> str | None:
        return self._read(ifname, 'phys_port_name')

    def mac(self, ifname: str) -> str | None:
        return self._read(ifname, 'address')

    def mtu(self, ifname: str) -> int | None:
        value = self._read(ifname, 'mtu')
        return int(value) if value is not None else None

    # ------------------------------------------------------- the PCI walk
    def locate_vf(self, vf_address: str) -> VfPort:
        """The VF's PF, index and switchdev uplink (steps 1 and 2).

        :raises: VfNotFound when the address is not a VF or its PF has no
            netdev with a ``phys_switch_id`` (no switchdev uplink).
        """
        try:
            vf = sysfs_mod.VdpaSysfs(sys_root=self.sys_root).vf_info(
                vf_address)
        except exception.NovaVdpaException as e:
            raise exception.VfNotFound(ifname=vf_address, reason=e.message)
        net_dir = os.path.join(self.sys_root, 'bus', 'pci', 'devices',
                               vf.pf_address, 'net')
        try:
            pf_netdevs = sorted(os.listdir(net_dir))
        except OSError:
            pf_netdevs = []
        uplinks = [n for n in pf_netdevs if self.switch_id(n)]
        if not uplinks:
            raise exception.VfNotFound(
                ifname=vf_address,
                reason='PF %s has no netdev with a phys_switch_id (%s): '
                'is its eswitch in switchdev mode?' % (
                    vf.pf_address, ', '.join(pf_netdevs) or 'no netdev'))
        function = vf.pf_address.rpartition('.')[2]
        return VfPort(vf_address=vf_address, pf_bus='pci',
                      pf_name=vf.pf_address, vf_index=vf.vf_index,
                      pf_function=int(function, 16) if function else None,
                      uplink=uplinks[0])

    # ------------------------------------------------ representors (step 3)
    def representors(self, port: VfPort) -> list[str]:
        """Every netdev that represents the VF (exactly one is healthy).

        :returns: names, sorted; empty when the eswitch has none for it.
        """
        switch = self.switch_id(port.uplink)
        if switch is None:
            return []
        found = []
        for name in self.names():
            if name == port.uplink or self.switch_id(name) != switch:
                continue
            port_name = self.port_name(name)
            if port_name is None:
                continue
            pf, vf = parse_port_name(port_name)
            if vf != port.vf_index:
                continue
            if (pf is not None and port.pf_function is not None
                    and pf != port.pf_function):
                continue
            found.append(name)
        return found

    # ------------------------------------------------------- TC offload
    def hw_tc_offload(self, ifname: str) -> bool | None:
        """Whether ``hw-tc-offload`` is on; None if the driver lacks it.

        :raises: NetdevError when the netdev does not exist or ethtool
            fails.
        """
        # Imported here: pyroute2.ethtool is a costly import the other
        # readers of this module do not need.
        from pyroute2.ethtool import ioctl

        eth = ioctl.IoctlEthtool()
        try:
            eth.change_ifname(ifname)
            features = eth.get_features()
        except ioctl.NoSuchDevice:
            raise exception.NetdevError(ifname=ifname,
                                        reason='no such network device')
        except (ioctl.EthtoolError, OSError) as e:
            if getattr(e, 'errno', None) == errno.ENODEV:
                raise exception.NetdevError(ifname=ifname,
                                            reason='no such network device')
            raise exception.NetdevError(
                ifname=ifname, reason='ethtool features: %s' % e)
        finally:
            eth.close()
        if HW_TC_OFFLOAD not in features:
            return None  # a kernel without the feature bit
        on = bool(features[HW_TC_OFFLOAD])
        if not on and not features.is_available(HW_TC_OFFLOAD):
            return None  # "off [fixed]": the driver cannot offload TC
        return on

    # ------------------------------------------------------- addresses
    def addresses(self) -> list[tuple[str, str]]:
        """Every (netdev, IP address) of this network namespace.

        :raises: NetdevError when rtnetlink cannot be read.
        """
        # Imported here, as for ethtool: most callers never need it.
        from pyroute2 import IPRoute

        try:
            with IPRoute() as ipr:
                names = {link['index']: link.get_attr('IFLA_IFNAME')
                         for link in ipr.get_links()}
                found = []
                for msg in ipr.get_addr():
                    address = (msg.get_attr('IFA_LOCAL')
                               or msg.get_attr('IFA_ADDRESS'))
                    name = names.get(msg['index'])
                    if address and name:
                        found.append((name, address))
        except OSError as e:
            raise exception.NetdevError(ifname='-',
                                        reason='address dump: %s' % e)
        return found

    def address_owners(self, address: str) -> list[str]:
        """The netdevs that hold ``address`` (an IPv4 or IPv6 address).

        :raises: ValueError when ``address`` is not an IP address;
            NetdevError as :meth:`addresses`.
        """
        wanted = ipaddress.ip_address(address)
        return sorted({name for name, held in self.addresses()
                       if ipaddress.ip_address(held) == wanted})

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

"""Fakes of the host networking pieces, shared by the offload tests.

A sysfs tree in a folder with what the kernel shows for SR-IOV and
switchdev ports, a devlink client, pyroute2's ethtool ioctl (ENODEV for a
missing netdev, as the kernel answers) and an OVSDB reader. Test modules
import these from here, never from one another.
"""

import os

import fixtures

from nova_vdpa import exception
from nova_vdpa.kernel import devlink
from nova_vdpa.kernel import netdev
from nova_vdpa.network import ovsdb
from tests.unit import base

PF = '0000:08:00.0'
PF1 = '0000:08:00.1'
SWITCH = '8a6e0e0003fe0f00'


class SysfsTree:
    """Build a sysfs tree with PCI VFs and netdevs under ``root``."""

    def __init__(self, root):
        self.root = root
        self.pci = os.path.join(root, 'bus', 'pci', 'devices')
        self.net = os.path.join(root, 'class', 'net')
        os.makedirs(self.pci)
        os.makedirs(self.net)

    def pf(self, address, uplink=None, switch=None, vfs=()):
        os.makedirs(os.path.join(self.pci, address, 'net'))
        for i, vf in enumerate(vfs):
            os.makedirs(os.path.join(self.pci, vf))
            os.symlink('../' + address, os.path.join(self.pci, vf, 'physfn'))
            os.symlink('../' + vf, os.path.join(self.pci, address,
                                                'virtfn%d' % i))
        if uplink:
            os.makedirs(os.path.join(self.pci, address, 'net', uplink))
            self.netdev(uplink, switch, 'p0' if switch else None)

    def netdev(self, name, switch=None, port_name=None):
        d = os.path.join(self.net, name)
        os.makedirs(d)
        # Without a switch port the kernel answers EOPNOTSUPP on read; a
        # missing file is read the same way by the code under test.
        if switch:
            with open(os.path.join(d, 'phys_switch_id'), 'w') as f:
                f.write(switch + '\n')
        if port_name:
            with open(os.path.join(d, 'phys_port_name'), 'w') as f:
                f.write(port_name + '\n')


class FakeDevlink:
    def __init__(self, modes):
        self.modes = modes

    def eswitch(self, handle):
        if handle not in self.modes:
            raise exception.DevlinkDeviceNotFound(handle=handle,
                                                  reason='ENODEV')
        return devlink.EswitchState(handle, self.modes[handle])


class NetdevTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.tree = SysfsTree(self.useFixture(fixtures.TempDir()).path)
        self.tree.pf(PF, 'enp8s0f0np0', SWITCH,
                     vfs=['0000:08:00.2', '0000:08:00.3', '0000:08:00.4'])
        self.tree.netdev('enp8s0f0npf0vf0', SWITCH, 'pf0vf0')
        self.tree.netdev('enp8s0f0npf0vf1', SWITCH, 'pf0vf1')
        # Same switch, other PF (function 1): must not match PF 0's VF 0.
        self.tree.netdev('enp8s0f1npf1vf0', SWITCH, 'pf1vf0')
        self.tree.netdev('eth0')
        self.netdevs = netdev.Netdevs(self.tree.root)
        self.devlink = FakeDevlink({'pci/' + PF: 1})


class FakeFeatures:
    """What pyroute2's EthtoolFeaturesList offers, for one netdev."""

    def __init__(self, features):
        self.features = features  # name -> (active, changeable)

    def __contains__(self, name):
        return name in self.features

    def __getitem__(self, name):
        return self.features[name][0]

    def is_available(self, name):
        return self.features[name][1]


class FakeIoctlEthtool:
    netdevs = {}

    def __init__(self):
        self.ifname = None

    def change_ifname(self, ifname):
        self.ifname = ifname

    def get_features(self):
        from pyroute2.ethtool import ioctl
        if self.ifname not in self.netdevs:
            # The kernel answers ENODEV; pyroute2 turns it into this.
            raise ioctl.NoSuchDevice(self.ifname)
        return FakeFeatures(self.netdevs[self.ifname])

    def close(self):
        pass


PORT = '0c1e5f44-5cf0-4b0e-9a55-3f3c5c5ad1c1'
MAC = 'fa:16:3e:12:34:56'
REP = 'enp8s0f0npf0vf0'


class FakeOvsdb:
    def __init__(self):
        self.config = {'hw-offload': 'true'}
        self.ids = {}
        self.bridges = {'br-int': '', 'br-tun': ''}
        self.rows = {}

    def other_config(self):
        return dict(self.config)

    def external_ids(self):
        return dict(self.ids)

    def bridge_ports(self, bridge):
        if bridge not in self.bridges:
            return []
        return sorted(n for n, r in self.rows.items() if r.bridge == bridge)

    def tunnel_ports(self, bridge):
        return [self.rows[n] for n in self.bridge_ports(bridge)
                if self.rows[n].type in ovsdb.TUNNEL_TYPES]

    def bridge_datapath_type(self, bridge):
        return self.bridges.get(bridge)

    def interface(self, name):
        return self.rows.get(name)

    def plug(self, name, bridge='br-int', ofport=5, iface_id=PORT, mac=MAC,
             error=None):
        ids = {'iface-status': 'active', 'vm-uuid': 'x'}
        if iface_id is not None:
            ids['iface-id'] = iface_id
        if mac is not None:
            ids['attached-mac'] = mac
        self.rows[name] = ovsdb.InterfaceRow(
            name=name, type='', ofport=ofport, external_ids=ids, options={},
            error=error, bridge=bridge, tag=3)

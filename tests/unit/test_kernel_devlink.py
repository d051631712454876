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

"""nova_vdpa.kernel.devlink against a fake devlink family.

The fake decodes what we send with pyroute2's own devlink decoder and
answers as the kernel's devlink_nl_eswitch_get_doit does, enforcing its
rules (each checked on the real 6.12 kernel with netdevsim in
tests/functional/test_network_offload.py):

* bus and device name are required (EINVAL without them);
* an unknown handle is ENODEV, a device whose driver has no eswitch ops
  EOPNOTSUPP;
* the command is GENL_ADMIN_PERM: EPERM without CAP_NET_ADMIN;
* the mode is a u16 attribute, the inline and encap modes u8;
* without the family, binding the socket is ENOENT.
"""

import errno

from pyroute2.netlink import devlink as pr_devlink
from pyroute2.netlink.exceptions import NetlinkError

from nova_vdpa import exception
from nova_vdpa.kernel import devlink
from tests.unit import base

FAMILY_ID = 0x15


class FakeDevlinkKernel:
    def __init__(self):
        self.loaded = True
        self.admin = True
        # handle -> mode (None: no eswitch ops)
        self.devices = {'pci/0000:08:00.0': 1, 'pci/0000:08:00.1': 0,
                        'netdevsim/netdevsim10': 1,
                        'pci/0000:03:00.0': None}
        self.requests = []

    def socket(self):
        return FakeDevlinkSocket(self)


class FakeDevlinkSocket:
    def __init__(self, kernel):
        self.kernel = kernel
        self.prid = None
        self.closed = False

    def bind(self):
        if not self.kernel.loaded:
            raise NetlinkError(errno.ENOENT)
        self.prid = FAMILY_ID

    def close(self):
        self.closed = True

    def nlm_request(self, msg, msg_type, msg_flags):
        if msg_type != FAMILY_ID:
            raise NetlinkError(errno.ENOENT)
        msg['header']['type'] = msg_type
        msg['header']['flags'] = msg_flags
        msg.encode()
        wire = pr_devlink.devlinkcmd(msg.data)
        wire.decode()
        self.kernel.requests.append(wire)
        if wire['cmd'] != pr_devlink.DEVLINK_CMD_ESWITCH_GET:
            raise NetlinkError(errno.EOPNOTSUPP)
        if not self.kernel.admin:
            raise NetlinkError(errno.EPERM)
        bus = wire.get_attr('DEVLINK_ATTR_BUS_NAME')
        dev = wire.get_attr('DEVLINK_ATTR_DEV_NAME')
        if bus is None or dev is None:
            raise NetlinkError(errno.EINVAL)
        handle = '%s/%s' % (bus, dev)
        if handle not in self.kernel.devices:
            raise NetlinkError(errno.ENODEV)
        mode = self.kernel.devices[handle]
        if mode is None:
            raise NetlinkError(errno.EOPNOTSUPP)
        reply = pr_devlink.devlinkcmd()
        reply['cmd'] = pr_devlink.DEVLINK_CMD_ESWITCH_GET
        reply['version'] = 1
        reply['attrs'] = [('DEVLINK_ATTR_BUS_NAME', bus),
                          ('DEVLINK_ATTR_DEV_NAME', dev),
                          ('DEVLINK_ATTR_ESWITCH_MODE', mode),
                          ('DEVLINK_ATTR_ESWITCH_INLINE_MODE', 0),
                          ('DEVLINK_ATTR_ESWITCH_ENCAP_MODE', 1)]
        reply['header']['type'] = FAMILY_ID
        reply.encode()
        parsed = pr_devlink.devlinkcmd(reply.data)
        parsed.decode()
        return iter([parsed])


class TestEswitch(base.TestCase):

    def setUp(self):
        super().setUp()
        self.kernel = FakeDevlinkKernel()
        self.client = devlink.DevlinkClient(self.kernel.socket)
        self.addCleanup(self.client.close)

    def test_switchdev(self):
        state = self.client.eswitch('pci/0000:08:00.0')
        self.assertEqual(devlink.EswitchState(
            'pci/0000:08:00.0', devlink.ESWITCH_MODE_SWITCHDEV, 0, 1), state)
        self.assertTrue(state.is_switchdev)
        self.assertEqual('switchdev', state.mode_name)

    def test_request_on_the_wire(self):
        self.client.eswitch('netdevsim/netdevsim10')
        wire = self.kernel.requests[-1]
        self.assertEqual(devlink.DEVLINK_GENL_VERSION, wire['version'])
        self.assertEqual('netdevsim', wire.get_attr('DEVLINK_ATTR_BUS_NAME'))
        self.assertEqual('netdevsim10',
                         wire.get_attr('DEVLINK_ATTR_DEV_NAME'))

    def test_legacy(self):
        state = self.client.eswitch('pci/0000:08:00.1')
        self.assertFalse(state.is_switchdev)
        self.assertEqual('legacy', state.mode_name)

    def test_unknown_mode_is_named(self):
        self.kernel.devices['pci/0000:08:00.1'] = 7
        self.assertEqual('unknown(7)',
                         self.client.eswitch('pci/0000:08:00.1').mode_name)

    def test_unknown_device(self):
        e = self.assertRaises(exception.DevlinkDeviceNotFound,
                              self.client.eswitch, 'pci/0000:99:00.0')
        self.assertIn('pci/0000:99:00.0', e.message)
        self.assertIn('ENODEV', e.message)

    def test_no_eswitch(self):
        self.assertRaises(exception.EswitchNotSupported,
                          self.client.eswitch, 'pci/0000:03:00.0')

    def test_not_admin(self):
        self.kernel.admin = False
        e = self.assertRaises(exception.DevlinkPermissionDenied,
                              self.client.eswitch, 'pci/0000:08:00.0')
        self.assertIn('CAP_NET_ADMIN', e.message)

    def test_bad_handle_refused_before_the_kernel(self):
        for handle in ('0000:08:00.0', 'pci/', '/x', 'a/b/c'):
            self.assertRaises(exception.DevlinkError, self.client.eswitch,
                              handle)
        self.assertEqual([], self.kernel.requests)

    def test_family_absent(self):
        self.kernel.loaded = False
        e = self.assertRaises(exception.DevlinkNotAvailable,
                              devlink.DevlinkClient, self.kernel.socket)
        self.assertIn('devlink', e.message)

    def test_close_is_idempotent(self):
        self.client.close()
        self.client.close()

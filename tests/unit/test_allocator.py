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

"""The allocator against the fake kernel, privsep entrypoints in-process.

Every test checks what the (fake) kernel ends up with: which devices exist,
with which MAC, MTU and queue pairs, bound to which driver. The same
behaviours run on the real kernel in tests/functional/test_allocator.py.
"""

import logging
import os
import threading
import time

import fixtures

from nova_vdpa import allocator
from nova_vdpa import conf as vdpa_conf
from nova_vdpa import exception
from nova_vdpa.kernel import model
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs
from nova_vdpa.kernel import vhost
from nova_vdpa.privsep import vdpa as priv_vdpa
from tests.unit import base
from tests.unit import fake_kernel

PORT_A = '5b7d5f1e-3c56-4d5e-9a43-2f0c1b9e7a01'
PORT_B = '5b7d5f1e-3c56-4d5e-9a43-2f0c1b9e7a02'
SIM_VF = '0000:00:05.1'
SIM_VF2 = '0000:00:05.2'
HW_VF = '0000:08:00.2'
MAC = 'fa:16:3e:00:00:01'


class LockingKernel(fake_kernel.FakeKernel):
    """The fake kernel with genetlink's lock around the vdpa family.

    The vdpa family is not ``parallel_ops``: genetlink runs its requests
    one at a time, so a DEV_DEL that waits for a chardev holder keeps every
    other vdpa request waiting (tests/functional/test_allocator.py shows it
    on the real kernel). ``started`` counts requests that reached it,
    ``commands`` lists their VDPA_CMD_* numbers.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.genl_mutex = threading.Lock()
        self.started = 0
        self.commands = []

    def handle(self, cmd, attrs, dump):
        self.started += 1
        self.commands.append(cmd)
        with self.genl_mutex:
            return super().handle(cmd, attrs, dump)


class AllocatorTestCase(base.KernelTestCase):
    """An allocator on a fake kernel; privsep runs in-process."""

    mgmtdevs = [fake_kernel.vdpasim_net(), fake_kernel.mlx5_vf(HW_VF)]
    allowed: tuple[str, ...] = ('vdpasim_net', 'pci/' + HW_VF)
    simulated = {SIM_VF: 'vdpasim_net'}

    def setUp(self):
        root = self.useFixture(fixtures.TempDir()).path
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(
            name='nova_vdpa', level=logging.DEBUG))
        # The kernel's /sys/bus/pci/devices/<VF> link to the VF's device,
        # under which mlx5 puts the VF's vDPA devices.
        self.kernel = LockingKernel(root, mgmtdevs=self.mgmtdevs)
        self.client = self.kernel.client()
        self.addCleanup(self.client.close)
        self.sysfs = self.kernel.sysfs()
        vf_dir = os.path.join(self.kernel.sys, 'devices', 'pci0000:00',
                              HW_VF)
        os.makedirs(vf_dir, exist_ok=True)
        pci = os.path.join(self.kernel.sys, 'bus', 'pci', 'devices')
        os.makedirs(pci)
        os.symlink(vf_dir, os.path.join(pci, HW_VF))

        self.conf = base.privsep_in_process(self, self.kernel,
                                            self.allowed)
        self.group = vdpa_conf.vdpa_group.name
        self.alloc = self.allocator()

    def allocator(self, **kwargs):
        kwargs.setdefault('management_devices', self.allowed)
        kwargs.setdefault('simulated_vfs', self.simulated)
        alloc = allocator.Allocator(client_factory=self.kernel.client,
                                    sysfs=self.sysfs, **kwargs)
        self.addCleanup(alloc.close)
        return alloc

    def request(self, port=PORT_A, vf=SIM_VF, mac=MAC, **kwargs):
        return allocator.PortRequest(port_id=port, vf_address=vf, mac=mac,
                                     **kwargs)

    def names(self):
        return sorted(self.kernel.devices)

    def operator_device(self, name, mgmtdev, driver=sysfs.VHOST_VDPA):
        """A device made by hand, as for upstream Nova."""
        self.client.create_device(name, mgmtdev, mac='02:00:00:00:00:aa')
        if driver is not None:
            self.sysfs.bind(name, driver)


class TestNames(AllocatorTestCase):

    def test_name_is_the_prefix_and_the_canonical_uuid(self):
        name = allocator.device_name(PORT_A)
        self.assertEqual('nvdpa-' + PORT_A, name)
        self.assertEqual(name, allocator.device_name(PORT_A.upper()))
        self.assertEqual(name, allocator.device_name(
            PORT_A.replace('-', '')))
        self.assertTrue(allocator.is_ours(name))

    def test_what_is_not_ours(self):
        for name in ('vdpa0', 'nvdpa-', 'nvdpa-x', 'nvdpa-' + PORT_A.upper(),
                     'xnvdpa-' + PORT_A, 'nvdpa-' + PORT_A + '-1', None):
            self.assertFalse(allocator.is_ours(name), name)

    def test_port_id_must_be_a_uuid(self):
        for bad in ('port1', '', '../x', None, 42):
            e = self.assertRaises(exception.VdpaPortRequestInvalid,
                                  allocator.device_name, bad)
            self.assertIn('UUID', str(e))


class TestManagementDevice(AllocatorTestCase):

    def test_vf_and_simulated_vf(self):
        self.assertEqual('pci/' + HW_VF,
                         self.alloc.management_device(HW_VF))
        self.assertEqual('vdpasim_net',
                         self.alloc.management_device(SIM_VF))

    def test_restricted_by_management_devices(self):
        alloc = self.allocator(management_devices=['vdpasim_net'])
        e = self.assertRaises(exception.VdpaManagementDeviceNotAllowed,
                              alloc.management_device, HW_VF)
        self.assertIn('pci/' + HW_VF, str(e))
        self.assertEqual(HW_VF, e.kwargs['vf_address'])

    def test_bad_vf_address(self):
        for bad in ('0000:08:00.2/../x', '08:00.2', '', None,
                    '0000:08:00.2 '):
            self.assertRaises(exception.VdpaPortRequestInvalid,
                              self.alloc.management_device, bad)

    def test_bad_simulated_vfs(self):
        self.assertRaises(exception.VdpaInvalidArgument,
                          allocator.parse_simulated_vfs, ['0000:00:05.1'])
        self.assertRaises(exception.VdpaInvalidArgument,
                          self.allocator, simulated_vfs={'x': 'vdpasim_net'})
        self.assertRaises(exception.VdpaInvalidArgument, self.allocator,
                          simulated_vfs={SIM_VF: 'vdpasim_net@../x'})
        for bad in (0, -1, True, '5'):
            e = self.assertRaises(exception.VdpaInvalidArgument,
                                  self.allocator, read_timeout=bad)
            self.assertIn('read_timeout', str(e))
        self.assertEqual({SIM_VF: 'vdpasim_net@op0'},
                         allocator.parse_simulated_vfs(
                             [SIM_VF + '=vdpasim_net@op0']))

    def test_simulated_vfs_are_logged_as_test_only(self):
        self.assertIn('simulated_vfs is set: VFs %s are served by '
                      'vdpasim_net. This option exists for tests only.'
                      % SIM_VF, self.log.output)

    def test_from_conf(self):
        self.conf.config(group=self.group, simulated_vfs=[
            SIM_VF2 + '=vdpasim_net'], management_devices=['vdpasim_net'])
        alloc = allocator.Allocator.from_conf(
            self.conf.conf, client_factory=self.kernel.client,
            sysfs=self.sysfs)
        self.addCleanup(alloc.close)
        self.assertEqual('vdpasim_net', alloc.management_device(SIM_VF2))
        self.assertRaises(exception.VdpaManagementDeviceNotAllowed,
                          alloc.management_device, HW_VF)

    def test_inventory(self):
        # An empty management_devices types no VF (an operator opts in).
        self.assertEqual({}, self.allocator(
            management_devices=[]).vf_management_devices())
        alloc = self.allocator(
            management_devices=['pci/' + HW_VF, 'vdpasim_net'])
        self.assertEqual({HW_VF: 'pci/' + HW_VF, SIM_VF: 'vdpasim_net'},
                         {vf: m.handle for vf, m in
                          alloc.vf_management_devices().items()})
        alloc = self.allocator(management_devices=['pci/' + HW_VF],
                               simulated_vfs={SIM_VF: 'vdpasim_net',
                                              SIM_VF2: 'absent_mgmt'})
        self.assertEqual([HW_VF], list(alloc.vf_management_devices()))

    def test_simulated_vfs_name_only_simulators(self):
        for target in ('pci/' + HW_VF, 'auxiliary/mlx5_core.sf.3',
                       'pci/' + HW_VF + '@vdpa0'):
            ex = self.assertRaises(
                exception.VdpaInvalidArgument, self.allocator,
                simulated_vfs={SIM_VF: target})
            self.assertIn('only to a simulator', str(ex))
            self.assertIn(target, str(ex))
        self.allocator(simulated_vfs={SIM_VF: 'vdpasim_net@vdpa0'})


class TestAllocate(AllocatorTestCase):

    def test_allocate_creates_binds_and_reports(self):
        a = self.alloc.allocate(self.request(mtu=1400))
        name = 'nvdpa-' + PORT_A
        self.assertEqual([name], self.names())
        d = self.kernel.devices[name]
        self.assertEqual((MAC, 1400, 'vdpasim_net'),
                         (d.mac, d.mtu, d.mgmtdev.handle))
        # The fake kernel binds new devices to virtio_vdpa first.
        self.assertEqual(sysfs.VHOST_VDPA, self.sysfs.driver(name))
        self.assertEqual(
            (name, 'vdpasim_net', self.sysfs.chardev(name), True),
            (a.name, a.mgmtdev, a.chardev, a.owned))
        self.assertEqual((MAC, 1400), (a.config.mac, a.config.mtu))
        self.assertEqual(256, a.device.max_vq_size)

    def test_allocate_is_idempotent(self):
        first = self.alloc.allocate(self.request(mtu=1400))
        again = self.allocator().allocate(self.request(mtu=1400))
        self.assertEqual(first, again)
        self.assertEqual(['nvdpa-' + PORT_A], self.names())

    def test_mac_is_compared_lowercase(self):
        first = self.alloc.allocate(self.request(mac=MAC.upper()))
        self.assertEqual(MAC, self.kernel.devices[first.name].mac)
        self.assertEqual(first, self.alloc.allocate(self.request()))

    def test_stale_device_is_made_again(self):
        name = allocator.device_name(PORT_A)
        self.client.create_device(name, 'vdpasim_net',
                                  mac='02:00:00:00:00:99', mtu=9000)
        a = self.alloc.allocate(self.request(mtu=1500))
        d = self.kernel.devices[name]
        self.assertEqual((MAC, 1500), (d.mac, d.mtu))
        self.assertEqual(a.chardev, self.sysfs.chardev(name))
        self.assertIn('had MAC 02:00:00:00:00:99, MTU 9000 instead of MAC '
                      '%s, MTU 1500: made again' % MAC, self.log.output)

    def test_device_on_another_vf_is_made_again(self):
        # The port moved from the simulated VF to the real one.
        old = self.alloc.allocate(self.request())
        new = self.alloc.allocate(self.request(vf=HW_VF))
        self.assertEqual(old.name, new.name)
        self.assertEqual('pci/' + HW_VF,
                         self.kernel.devices[new.name].mgmtdev.handle)

    def test_held_stale_device_is_a_typed_error_and_stays(self):
        a = self.alloc.allocate(self.request())
        self.kernel.open_chardev(a.name, pid=77)
        self.addCleanup(self.kernel.close_chardev, a.name)
        e = self.assertRaises(exception.VdpaStaleDeviceInUse,
                              self.alloc.allocate,
                              self.request(mac='fa:16:3e:00:00:02'))
        self.assertIn('MAC fa:16:3e:00:00:02', str(e))
        self.assertEqual(PORT_A, e.kwargs['port_id'])
        self.assertEqual(MAC, self.kernel.devices[a.name].mac)
        self.assertEqual(sysfs.VHOST_VDPA, self.sysfs.driver(a.name))

    def test_unbound_device_of_ours_is_bound(self):
        # A crash between creation and binding leaves it on virtio_vdpa.
        name = allocator.device_name(PORT_A)
        self.client.create_device(name, 'vdpasim_net', mac=MAC)
        self.assertEqual(sysfs.VIRTIO_VDPA, self.sysfs.driver(name))
        self.assertRaises(exception.VdpaChardevNotFound,
                          self.alloc.lookup, PORT_A, SIM_VF)
        a = self.alloc.allocate(self.request())
        self.assertEqual(sysfs.VHOST_VDPA, self.sysfs.driver(name))
        self.assertEqual(a, self.alloc.lookup(PORT_A, SIM_VF))

    def test_device_that_cannot_be_bound_is_not_left(self):
        # vhost_vdpa not loaded: the creation is undone.
        os.rename(os.path.join(self.kernel.bus, 'drivers', 'vhost_vdpa'),
                  os.path.join(self.kernel.root, 'vhost_vdpa.unloaded'))
        e = self.assertRaises(exception.VdpaBindError, self.alloc.allocate,
                              self.request())
        self.assertIn('not loaded', str(e))
        self.assertEqual([], self.names())

    def test_bad_requests_create_nothing(self):
        for req in (self.request(mac='zz'),
                    self.request(mac='01:00:5e:00:00:01'),
                    self.request(mtu=10),
                    self.request(queue_pairs=0),
                    self.request(port='port-a'),
                    self.request(vf='0000:08:00.2/x')):
            self.assertRaises(exception.VdpaPortRequestInvalid,
                              self.alloc.allocate, req)
        self.assertEqual([], self.names())

    def test_not_allowed_creates_nothing(self):
        alloc = self.allocator(management_devices=['pci/' + HW_VF])
        self.assertRaises(exception.VdpaManagementDeviceNotAllowed,
                          alloc.allocate, self.request())
        self.assertEqual([], self.names())

    def test_vf_without_vdpa(self):
        alloc = self.allocator(
            management_devices=self.allowed + ('pci/0000:09:00.2',))
        self.assertRaises(exception.VdpaManagementDeviceNotFound,
                          alloc.allocate, self.request(vf='0000:09:00.2'))
        self.assertEqual([], self.names())

    def test_empty_management_devices_allow_none(self):
        alloc = self.allocator(management_devices=())
        self.assertEqual({}, alloc.vf_management_devices())
        for vf in (SIM_VF, HW_VF):
            e = self.assertRaises(exception.VdpaManagementDeviceNotAllowed,
                                  alloc.allocate, self.request(vf=vf))
            self.assertIn('[nova_vdpa] management_devices is empty',
                          str(e))
        self.assertEqual([], self.names())
        # A device of ours made before: the caller's empty list narrows
        # the daemon's to none, and it stays.
        self.alloc.allocate(self.request())
        e = self.assertRaises(exception.VdpaDeviceNotOurs, alloc.release,
                              PORT_A, SIM_VF)
        self.assertIn('management_devices', str(e))
        self.assertEqual(['nvdpa-' + PORT_A], self.names())

    def test_vf_address_is_matched_whole(self):
        for vf in (HW_VF + '\n', ' ' + HW_VF, '0000:0A:00.2'):
            self.assertRaises(exception.VdpaPortRequestInvalid,
                              self.alloc.allocate, self.request(vf=vf))
            self.assertRaises(exception.VdpaInvalidArgument,
                              self.allocator, simulated_vfs={
                                  vf: 'vdpasim_net'})
        self.assertEqual([], self.names())

    def test_second_port_on_a_vf_is_no_space(self):
        self.alloc.allocate(self.request(vf=HW_VF))
        self.assertRaises(exception.VdpaNoSpace, self.alloc.allocate,
                          self.request(port=PORT_B, vf=HW_VF))
        self.assertEqual(['nvdpa-' + PORT_A], self.names())


class TestKernelRequests(AllocatorTestCase):
    """What one port's allocation and release ask of the kernel.

    Under the test bed's TCG every request and thread hand-off costs
    milliseconds (tools/bench_allocator.py): nothing is read twice.
    """

    def test_allocate_and_release_read_nothing_twice(self):
        a = self.alloc.allocate(self.request(mtu=1400))
        # The read before anything privileged (fails fast on a stuck
        # kernel), the daemon's count of our devices on the management
        # device (a dump), the creation, and the daemon's read-back.
        self.assertEqual([netlink.VDPA_CMD_MGMTDEV_GET,
                          netlink.VDPA_CMD_DEV_GET, netlink.VDPA_CMD_DEV_NEW,
                          netlink.VDPA_CMD_DEV_GET,
                          netlink.VDPA_CMD_DEV_CONFIG_GET],
                         self.kernel.commands)
        # The read-back is the kernel's view, as a later lookup sees it.
        self.assertEqual(a, self.alloc.lookup(PORT_A, SIM_VF))
        self.assertEqual((MAC, 1400), (a.config.mac, a.config.mtu))
        self.assertEqual(self.sysfs.chardev(a.name), a.chardev)
        del self.kernel.commands[:]
        # Again: the device read once, found right, nothing else.
        self.assertEqual(a, self.alloc.allocate(self.request(mtu=1400)))
        self.assertEqual([netlink.VDPA_CMD_DEV_GET,
                          netlink.VDPA_CMD_DEV_CONFIG_GET,
                          netlink.VDPA_CMD_MGMTDEV_GET],
                         self.kernel.commands)
        del self.kernel.commands[:]
        # The daemon's lookup (management device check), then DEV_DEL.
        self.alloc.release(PORT_A, SIM_VF)
        self.assertEqual([netlink.VDPA_CMD_DEV_GET, netlink.VDPA_CMD_DEV_DEL],
                         self.kernel.commands)
        self.assertEqual([], self.names())

    def test_release_outside_the_callers_management_devices(self):
        # The daemon allows vdpasim_net; the caller's narrower list still
        # refuses, without a read of the caller's own.
        a = self.alloc.allocate(self.request())
        alloc = self.allocator(management_devices=['pci/' + HW_VF])
        e = self.assertRaises(exception.VdpaDeviceNotOurs, alloc.release,
                              PORT_A, SIM_VF)
        self.assertIn('management_devices', str(e))
        self.assertEqual([a.name], self.names())


class TestQueuePairs(AllocatorTestCase):

    mgmtdevs = [fake_kernel.vdpasim_net(), fake_kernel.mlx5_vf(HW_VF),
                # Offers F_MQ but refuses max_vqp (a driver that reports
                # more than it accepts): asked again without it.
                fake_kernel.FakeMgmtdev(
                    'pci', '0000:08:00.3',
                    frozenset({'VDPA_ATTR_DEV_NET_CFG_MACADDR'}), 9,
                    0x3_0000_0020 | model.F_MQ)]
    allowed = AllocatorTestCase.allowed + ('pci/0000:08:00.3',)

    def test_capped_by_the_management_device(self):
        # 16 queues: one control queue, 7 pairs.
        a = self.alloc.allocate(self.request(vf=HW_VF, queue_pairs=32))
        self.assertEqual(7, self.kernel.devices[a.name].max_vqp)
        self.assertEqual(7, a.config.max_vq_pairs)
        self.assertIn('supports 7 queue pairs: %s gets 7, not 32'
                      % a.name, self.log.output)

    def test_what_is_asked_when_it_fits(self):
        a = self.alloc.allocate(self.request(vf=HW_VF, queue_pairs=4))
        self.assertEqual(4, self.kernel.devices[a.name].max_vqp)
        # Asking for more next time makes it again (nobody holds it).
        a = self.alloc.allocate(self.request(vf=HW_VF, queue_pairs=6))
        self.assertEqual(6, self.kernel.devices[a.name].max_vqp)

    def test_no_attribute_without_multiqueue(self):
        # vdpasim_net answers EOPNOTSUPP to max_vqp and offers no F_MQ.
        a = self.alloc.allocate(self.request(queue_pairs=4))
        self.assertEqual(1, self.kernel.devices[a.name].max_vqp)
        self.assertIsNone(a.config.max_vq_pairs)
        self.assertIn('vdpasim_net offers no multiqueue', self.log.output)

    def test_retried_without_when_refused(self):
        self.alloc.allocate(self.request(vf='0000:08:00.3', queue_pairs=2))
        self.assertEqual(['nvdpa-' + PORT_A], self.names())
        self.assertIn('pci/0000:08:00.3 refused max_vqp', self.log.output)


class TestMtuWithoutFeature(AllocatorTestCase):

    # Takes the MTU attribute, offers no F_MTU: the kernel creates the
    # device, and its guest never reads the MTU from it.
    mgmtdevs = [fake_kernel.vdpasim_net(), fake_kernel.FakeMgmtdev(
        'pci', HW_VF, frozenset({'VDPA_ATTR_DEV_NET_CFG_MACADDR',
                                 'VDPA_ATTR_DEV_NET_CFG_MTU'}), 3,
        0x3_0000_0020)]

    def test_made_with_a_warning(self):
        a = self.alloc.allocate(self.request(vf=HW_VF, mtu=1400))
        self.assertEqual(1400, self.kernel.devices[a.name].mtu)
        self.assertEqual(1, self.log.output.count(
            'offers no MTU feature (F_MTU): the guest of port %s is not '
            'told its MTU 1400 by device %s' % (PORT_A, a.name)))
        # Found as it is next time: no second warning.
        self.alloc.allocate(self.request(vf=HW_VF, mtu=1400))
        self.assertEqual(1, self.log.output.count('offers no MTU feature'))

    def test_no_warning_with_the_feature(self):
        self.alloc.allocate(self.request(mtu=1400))
        self.assertNotIn('offers no MTU feature', self.log.output)


class TestAdoption(AllocatorTestCase):

    simulated = {SIM_VF: 'vdpasim_net', SIM_VF2: 'vdpasim_net@opsim0'}

    def test_operator_device_on_a_vf_is_used_as_it_is(self):
        self.operator_device('vdpa0', 'pci/' + HW_VF)
        before = self.kernel.devices['vdpa0']
        a = self.alloc.allocate(self.request(vf=HW_VF, mtu=9000))
        self.assertEqual(('vdpa0', False, 'pci/' + HW_VF),
                         (a.name, a.owned, a.mgmtdev))
        self.assertEqual(self.sysfs.chardev('vdpa0'), a.chardev)
        self.assertIn('made by an operator, as it is', self.log.output)
        self.assertEqual(a, self.alloc.lookup(PORT_A, HW_VF))
        self.alloc.release(PORT_A, HW_VF)
        self.assertEqual(['vdpa0'], self.names())
        self.assertIs(before, self.kernel.devices['vdpa0'])
        self.assertEqual(('02:00:00:00:00:aa', 1500),
                         (before.mac, before.mtu))

    def test_operator_device_not_on_vhost_vdpa_is_refused_untouched(self):
        self.operator_device('vdpa0', 'pci/' + HW_VF, sysfs.VIRTIO_VDPA)
        e = self.assertRaises(exception.VdpaAdoptedDeviceNotBound,
                              self.alloc.allocate, self.request(vf=HW_VF))
        self.assertIn('vdpa0', str(e))
        self.assertIn('virtio_vdpa', str(e))
        self.assertEqual(['vdpa0'], self.names())
        self.assertEqual(sysfs.VIRTIO_VDPA, self.sysfs.driver('vdpa0'))

    def test_simulated_vf_adopts_the_named_device(self):
        self.operator_device('opsim0', 'vdpasim_net')
        a = self.alloc.allocate(self.request(vf=SIM_VF2))
        self.assertEqual(('opsim0', False), (a.name, a.owned))
        # Another simulated VF on the same simulator does not adopt it.
        b = self.alloc.allocate(self.request(port=PORT_B))
        self.assertTrue(b.owned)
        self.alloc.release(PORT_A, SIM_VF2)
        self.alloc.release(PORT_B, SIM_VF)
        self.assertEqual(['opsim0'], self.names())

    def test_other_devices_on_the_bus_are_not_the_vfs(self):
        self.operator_device('vdpa9', 'vdpasim_net')
        self.assertIsNone(self.alloc.lookup(PORT_A, HW_VF))
        self.assertIsNone(self.alloc.lookup(PORT_A, SIM_VF))
        self.assertTrue(self.alloc.allocate(self.request(vf=HW_VF)).owned)


class TestLookupRelease(AllocatorTestCase):

    def test_lookup(self):
        self.assertIsNone(self.alloc.lookup(PORT_A, SIM_VF))
        a = self.alloc.allocate(self.request())
        self.assertEqual(a, self.alloc.lookup(PORT_A, SIM_VF))

    def test_lookup_does_not_list_devices(self):
        for i in range(50):
            self.client.create_device('other%d' % i, 'vdpasim_net')
        self.alloc.allocate(self.request())
        dumps = []
        handle = self.kernel.handle

        def watch(cmd, attrs, dump):
            dumps.append(dump)
            return handle(cmd, attrs, dump)
        self.kernel.handle = watch
        self.assertIsNotNone(self.alloc.lookup(PORT_A, SIM_VF))
        self.assertEqual([False, False], dumps)

    def test_release_is_idempotent(self):
        self.alloc.allocate(self.request())
        self.alloc.allocate(self.request(port=PORT_B))
        self.alloc.release(PORT_A, SIM_VF)
        self.assertEqual(['nvdpa-' + PORT_B], self.names())
        self.alloc.release(PORT_A, SIM_VF)
        self.alloc.release(PORT_A)
        self.assertEqual(['nvdpa-' + PORT_B], self.names())

    def test_held_device_is_not_released(self):
        a = self.alloc.allocate(self.request())
        self.kernel.open_chardev(a.name, pid=4242)
        e = self.assertRaises(exception.VdpaDeviceInUse,
                              self.alloc.release, PORT_A, SIM_VF)
        self.assertIn('4242', str(e))
        self.assertEqual([a.name], self.names())
        self.kernel.close_chardev(a.name)
        self.alloc.release(PORT_A, SIM_VF)
        self.assertEqual([], self.names())

    def test_owned_devices(self):
        self.operator_device('vdpa0', 'vdpasim_net')
        self.alloc.allocate(self.request())
        self.alloc.allocate(self.request(port=PORT_B, vf=HW_VF))
        self.assertEqual(sorted(['nvdpa-' + PORT_A, 'nvdpa-' + PORT_B]),
                         sorted(d.name for d in self.alloc.owned_devices()))


PORT_C = '5b7d5f1e-3c56-4d5e-9a43-2f0c1b9e7a03'
PORT_D = '5b7d5f1e-3c56-4d5e-9a43-2f0c1b9e7a04'
SIM_VF3 = '0000:00:05.3'


class TestReconcile(AllocatorTestCase):
    """Start-up reconciliation and the states a SIGKILL can leave.

    tests/functional/test_allocator_reconcile.py runs the same on the real
    kernel (module reload, orphans, operator's and held devices).
    """

    simulated = {SIM_VF: 'vdpasim_net', SIM_VF2: 'vdpasim_net@opsim0',
                 SIM_VF3: 'vdpasim_net'}

    def test_missing_made_right_kept_orphans_deleted_others_untouched(self):
        kept = self.alloc.allocate(self.request(mtu=1400))
        orphan = self.alloc.allocate(self.request(port=PORT_C, vf=SIM_VF3,
                                                  mac='fa:16:3e:00:00:03'))
        self.operator_device('opsim0', 'vdpasim_net')
        self.operator_device('vdpa9', 'vdpasim_net')
        # Our prefix but not a canonical UUID: not ours either.
        self.iproute2_add('nvdpa-not-a-uuid')
        r = self.alloc.reconcile([
            self.request(mtu=1400),
            self.request(port=PORT_B, vf=HW_VF, mac='fa:16:3e:00:00:02'),
            self.request(port=PORT_D, vf=SIM_VF2, mac='fa:16:3e:00:00:04')])
        self.assertEqual(allocator.ReconcileResult(
            created=['nvdpa-' + PORT_B], kept=[kept.name, 'opsim0'],
            deleted=[orphan.name], held=[], failed={}), r)
        self.assertEqual(sorted(['nvdpa-' + PORT_A, 'nvdpa-' + PORT_B,
                                 'nvdpa-not-a-uuid', 'opsim0', 'vdpa9']),
                         self.names())
        self.assertEqual(kept, self.alloc.lookup(PORT_A, SIM_VF))
        b = self.kernel.devices['nvdpa-' + PORT_B]
        self.assertEqual(('fa:16:3e:00:00:02', sysfs.VHOST_VDPA),
                         (b.mac, b.driver))
        self.assertIn('Reconciled vDPA devices: 1 created, 2 kept, 1 '
                      'deleted, 0 held, 0 failed.', self.log.output)
        # Again: nothing to do.
        r = self.alloc.reconcile([self.request(mtu=1400)])
        self.assertEqual(([], [kept.name], ['nvdpa-' + PORT_B]),
                         (r.created, r.kept, r.deleted))

    def test_wiped_kernel_state_is_made_again(self):
        # A host reboot (or a module reload): the kernel forgot them all.
        reqs = [self.request(mtu=1400),
                self.request(port=PORT_B, vf=SIM_VF3,
                             mac='fa:16:3e:00:00:02', mtu=9000)]
        for req in reqs:
            self.alloc.allocate(req)
        for name in self.names():
            self.client.delete_device(name)
        r = self.allocator().reconcile(reqs)
        self.assertEqual(sorted(['nvdpa-' + PORT_A, 'nvdpa-' + PORT_B]),
                         sorted(r.created))
        for req in reqs:
            d = self.kernel.devices[allocator.device_name(req.port_id)]
            self.assertEqual((req.mac, req.mtu, sysfs.VHOST_VDPA),
                             (d.mac, d.mtu, d.driver))

    def test_held_orphan_is_left_and_reported(self):
        a = self.alloc.allocate(self.request())
        self.kernel.open_chardev(a.name, pid=4242)
        self.addCleanup(self.kernel.close_chardev, a.name)
        t0 = time.monotonic()
        r = self.alloc.reconcile([])
        self.assertLess(time.monotonic() - t0, 5, 'something waited')
        self.assertEqual(([a.name], []), (r.held, r.deleted))
        self.assertEqual([a.name], self.names())
        self.assertIn('belongs to no port expected on this host but is '
                      'held', self.log.output)
        self.assertIn('4242', self.log.output)

    def test_one_failure_does_not_stop_the_rest(self):
        orphan = self.alloc.allocate(self.request(port=PORT_C, vf=SIM_VF3))
        r = self.alloc.reconcile([
            self.request(mac='not-a-mac'),
            allocator.PortRequest(port_id='nope', vf_address=SIM_VF,
                                  mac=MAC),
            self.request(port=PORT_B, vf=SIM_VF3,
                         mac='fa:16:3e:00:00:02')])
        self.assertEqual([PORT_A, 'nope'], sorted(r.failed))
        self.assertEqual(['nvdpa-' + PORT_B], r.created)
        self.assertEqual([orphan.name], r.deleted)
        self.assertIn('a port id is a UUID', r.failed['nope'])
        self.assertIn('Reconciling vDPA devices: nope failed',
                      self.log.output)
        # The adopted device is on the wrong driver: refused, untouched.
        self.operator_device('opsim0', 'vdpasim_net', sysfs.VIRTIO_VDPA)
        r = self.alloc.reconcile([self.request(port=PORT_D, vf=SIM_VF2)])
        self.assertIn('virtio_vdpa', r.failed[PORT_D])
        self.assertEqual(sysfs.VIRTIO_VDPA, self.sysfs.driver('opsim0'))

    def test_orphan_outside_management_devices_is_a_failure(self):
        self.alloc.allocate(self.request(port=PORT_B, vf=HW_VF))
        alloc = self.allocator(management_devices=['vdpasim_net'])
        r = alloc.reconcile([])
        self.assertIn('management_devices', r.failed['nvdpa-' + PORT_B])
        self.assertEqual(['nvdpa-' + PORT_B], self.names())

    # What a SIGKILL can leave (tools/crash_safety.py kills at random).
    def test_created_not_bound(self):
        name = allocator.device_name(PORT_A)
        self.client.create_device(name, 'vdpasim_net', mac=MAC)
        self.assertEqual(sysfs.VIRTIO_VDPA, self.sysfs.driver(name))
        self.assertRaises(exception.VdpaChardevNotFound, self.alloc.lookup,
                          PORT_A, SIM_VF)
        r = self.alloc.reconcile([self.request()])
        self.assertEqual([name], r.created)
        self.assertEqual(sysfs.VHOST_VDPA, self.sysfs.driver(name))
        self.assertEqual(self.sysfs.chardev(name),
                         self.alloc.lookup(PORT_A, SIM_VF).chardev)

    def override_not_probed(self, name):
        """driver_override written, virtio_vdpa unbound, no probe yet."""
        self.client.create_device(name, 'vdpasim_net', mac=MAC)
        self.sysfs._write(os.path.join(self.kernel.bus, 'devices', name,
                                       'driver_override'), 'vhost_vdpa')
        self.sysfs._write(os.path.join(self.kernel.bus, 'drivers',
                                       'virtio_vdpa', 'unbind'), name)
        self.assertIsNone(self.sysfs.driver(name))

    def test_override_written_not_probed(self):
        name = allocator.device_name(PORT_A)
        self.override_not_probed(name)
        self.assertRaises(exception.VdpaChardevNotFound, self.alloc.lookup,
                          PORT_A, SIM_VF)
        r = self.alloc.reconcile([self.request()])
        self.assertEqual([name], r.created)
        self.assertEqual(sysfs.VHOST_VDPA, self.sysfs.driver(name))

    def test_half_made_devices_of_ports_not_expected_are_deleted(self):
        unbound = allocator.device_name(PORT_A)
        self.override_not_probed(unbound)
        on_virtio = allocator.device_name(PORT_B)
        self.client.create_device(on_virtio, 'vdpasim_net', mac=MAC)
        r = self.alloc.reconcile([])
        self.assertEqual(sorted([unbound, on_virtio]), sorted(r.deleted))
        self.assertEqual([], self.names())

    def test_stale_device_is_made_again(self):
        # Killed between the deletion of a stale device and its creation
        # is a missing device; killed before the deletion, a stale one.
        name = allocator.device_name(PORT_A)
        self.client.create_device(name, 'vdpasim_net',
                                  mac='02:00:00:00:00:99')
        r = self.alloc.reconcile([self.request(mtu=1400)])
        self.assertEqual([name], r.created)
        d = self.kernel.devices[name]
        self.assertEqual((MAC, 1400, sysfs.VHOST_VDPA),
                         (d.mac, d.mtu, d.driver))


class TestPrivilegedSideTrustsNoCaller(AllocatorTestCase):
    """The entrypoints refuse devices that are not ours, on both sides."""

    allowed = ('vdpasim_net', 'pci/' + HW_VF)

    def test_operator_device_is_never_deleted_or_bound(self):
        self.operator_device('vdpa0', 'vdpasim_net', sysfs.VIRTIO_VDPA)
        for call in (lambda: priv_vdpa.delete_device('vdpa0', timeout=10),
                     lambda: priv_vdpa.bind_device('vdpa0'),
                     # The daemon side, as a compromised caller reaches it.
                     lambda: priv_vdpa._delete_device('vdpa0', 5.0),
                     lambda: priv_vdpa._bind_device('vdpa0')):
            e = self.assertRaises(exception.VdpaDeviceNotOurs, call)
            self.assertIn('vdpa0', str(e))
        self.assertEqual(['vdpa0'], self.names())
        self.assertEqual(sysfs.VIRTIO_VDPA, self.sysfs.driver('vdpa0'))

    def test_only_our_names_are_created(self):
        for call in (lambda: priv_vdpa.create_bound_device('vdpa1',
                                                           'vdpasim_net'),
                     lambda: priv_vdpa._create_bound_device(
                         'vdpa1', 'vdpasim_net', None, None, None)):
            self.assertRaises(exception.VdpaDeviceNotOurs, call)
        self.assertEqual([], self.names())

    def test_management_device_outside_the_configuration(self):
        name = allocator.device_name(PORT_A)
        self.conf.config(group=self.group,
                         management_devices=['pci/' + HW_VF])
        for create in (priv_vdpa.create_bound_device,
                       lambda name, mgmtdev: priv_vdpa._create_bound_device(
                           name, mgmtdev, None, None, None)):
            self.assertRaises(exception.VdpaDeviceNotOurs, create, name,
                              'vdpasim_net')
        self.assertEqual([], self.names())
        # Made behind nova-vdpa's back: the daemon reads its management
        # device from the kernel and refuses.
        self.client.create_device(name, 'vdpasim_net')
        for call in (lambda: priv_vdpa._delete_device(name, 5.0),
                     lambda: priv_vdpa._bind_device(name)):
            e = self.assertRaises(exception.VdpaDeviceNotOurs, call)
            self.assertIn('management_devices', str(e))
        self.assertEqual([name], self.names())

    def test_refusal_survives_the_privsep_round_trip(self):
        e = self.assertRaises(exception.VdpaDeviceNotOurs,
                              priv_vdpa._delete_device, 'vdpa0', 5.0)
        self.assertEqual(str(e), str(type(e)(*e.args)))


class TestStuckKernel(AllocatorTestCase):
    """A deletion stuck on a held chardev: later calls fail fast."""

    def stuck_deletion(self, name):
        """Hold ``name``'s chardev and start a raw DEV_DEL on it."""
        self.kernel.open_chardev(name, pid=99)
        deleter = threading.Thread(
            target=lambda: self.kernel.client().delete_device(name))
        deleter.start()

        def release():
            if name in self.kernel.devices and \
                    self.kernel.devices[name].holder is not None:
                self.kernel.close_chardev(name)
            deleter.join(10)
        self.addCleanup(release)
        # Wait until the deletion sits in the kernel with the lock.
        for _ in range(1000):
            if self.kernel.genl_mutex.locked():
                break
            time.sleep(0.01)
        return release

    def test_reads_and_creates_fail_fast_then_recover(self):
        a = self.alloc.allocate(self.request())
        alloc = self.allocator(read_timeout=0.2)
        release = self.stuck_deletion(a.name)

        e = self.assertRaises(exception.VdpaKernelTimeout, alloc.allocate,
                              self.request(port=PORT_B, vf=HW_VF))
        self.assertIn('0.2', str(e))
        started = self.kernel.started
        # The reader is still stuck: nothing more reaches the kernel.
        for call in (lambda: alloc.allocate(self.request(port=PORT_B)),
                     lambda: alloc.lookup(PORT_A, SIM_VF),
                     lambda: alloc.release(PORT_A),
                     alloc.vf_management_devices,
                     alloc.owned_devices):
            self.assertRaises(exception.VdpaKernelTimeout, call)
        self.assertEqual(started, self.kernel.started)
        self.assertEqual([a.name], self.names())

        release()
        self.assertEqual([], self.names())
        # The stuck read ends just after the deletion; until it has, calls
        # still fail at once.
        for _ in range(1000):
            try:
                alloc.owned_devices()
                break
            except exception.VdpaKernelTimeout:
                time.sleep(0.01)
        b = alloc.allocate(self.request(port=PORT_B))
        self.assertEqual(['nvdpa-' + PORT_B], self.names())
        self.assertEqual(b, alloc.lookup(PORT_B, SIM_VF))


class _Killed(BaseException):
    """The daemon's end at a kernel write: no handler of ours runs."""


class TestPrivsepDaemonKilled(AllocatorTestCase):
    """The privsep daemon SIGKILLed in a call: typed, nothing half made.

    The call's kernel work runs in-process up to the kill, a count of the
    fake kernel's writes (netlink DEV_NEW and DEV_DEL, sysfs writes); the
    channel then fails the call as it does for a dead daemon. That a real
    daemon's death becomes VdpaPrivsepDied is
    tests/unit/test_privsep_channel.py's, and the bed kills nova-vdpa's
    own daemon (tests/functional/test_privsep_daemon_killed.py).
    """

    #: a creation's writes: DEV_NEW (a new device autoprobes to
    #: virtio_vdpa, as in the bed), driver_override, virtio_vdpa/unbind,
    #: drivers_probe
    CREATE_WRITES = 4

    def setUp(self):
        super().setUp()
        #: one per privileged call, in order: die after that many writes
        #: of the call (0: before any), 'reply' (all done, the reply
        #: lost) or None (the daemon lives)
        self.plans = []
        self.writes_left = None
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.channel.call', self.channel_call))
        real_handle = self.kernel.handle

        def handle(cmd, attrs, dump):
            out = real_handle(cmd, attrs, dump)
            if cmd in (netlink.VDPA_CMD_DEV_NEW, netlink.VDPA_CMD_DEV_DEL):
                self.wrote()
            return out
        self.kernel.handle = handle
        real_write = fake_kernel.FakeSysfs._write

        def write(sysfs_, path, value):
            real_write(sysfs_, path, value)
            self.wrote()
        self.useFixture(fixtures.MonkeyPatch(
            'tests.unit.fake_kernel.FakeSysfs._write', write))

    def wrote(self):
        if self.writes_left is None:
            return
        self.writes_left -= 1
        if self.writes_left == 0:
            self.writes_left = None
            raise _Killed()

    def channel_call(self, ctx, entrypoint, *args, action, device,
                     mgmtdev='-'):
        plan = self.plans.pop(0) if self.plans else None
        died = exception.VdpaPrivsepDied(
            device=device, mgmtdev=mgmtdev, attribute=action,
            reason='killed by the test (%s)' % plan)
        if plan is None:
            return entrypoint(*args)
        if plan == 0:
            raise died
        if plan == 'reply':
            entrypoint(*args)
            raise died
        self.writes_left = plan
        try:
            return entrypoint(*args)
        except _Killed:
            raise died
        finally:
            self.writes_left = None

    def assertWhole(self, name):
        self.assertEqual([name], self.names())
        self.assertEqual(sysfs.VHOST_VDPA, self.sysfs.driver(name))
        self.assertEqual(MAC, self.client.get_config(name).mac)

    def test_killed_in_a_creation_leaves_no_device(self):
        name = allocator.device_name(PORT_A)
        for plan in list(range(self.CREATE_WRITES + 1)) + ['reply']:
            self.plans = [plan]
            self.assertRaises(exception.VdpaPrivsepDied, self.alloc.allocate,
                              self.request())
            self.assertEqual([], self.names(), plan)
            self.assertEqual([], self.plans)
            # The next call makes it whole.
            self.alloc.allocate(self.request())
            self.assertWhole(name)
            self.alloc.release(PORT_A)
        self.assertIn('was deleted: the privsep daemon died while making '
                      'it', self.log.output)

    def test_killed_in_a_binding_leaves_no_unbound_device(self):
        # A crash before the binding left the device on virtio_vdpa; the
        # daemon dies again while the allocation binds it.
        name = allocator.device_name(PORT_A)
        for plan in (0, 1, 2, 'reply'):
            self.client.create_device(name, 'vdpasim_net', mac=MAC)
            self.assertEqual(sysfs.VIRTIO_VDPA, self.sysfs.driver(name))
            self.plans = [plan]
            self.assertRaises(exception.VdpaPrivsepDied, self.alloc.allocate,
                              self.request())
            self.assertEqual([], self.names(), plan)
        self.alloc.allocate(self.request())
        self.assertWhole(name)

    def test_a_repair_that_dies_too_is_left_to_the_next_call(self):
        name = allocator.device_name(PORT_A)
        # Killed after the unbind, and again before the repair's delete.
        self.plans = [3, 0]
        self.assertRaises(exception.VdpaPrivsepDied, self.alloc.allocate,
                          self.request())
        self.assertEqual([name], self.names())
        self.assertIsNone(self.sysfs.driver(name))
        self.assertIn('may be half made', self.log.output)
        self.alloc.allocate(self.request())
        self.assertWhole(name)

    def test_killed_in_a_release_is_released_once_more(self):
        for plan in (0, 1, 'reply'):
            self.alloc.allocate(self.request())
            self.plans = [plan]
            self.alloc.release(PORT_A)
            self.assertEqual([], self.names(), plan)
            self.assertEqual([], self.plans)
        # Killed twice: the caller is told, the device is whole.
        self.alloc.allocate(self.request())
        self.plans = [0, 0]
        self.assertRaises(exception.VdpaPrivsepDied, self.alloc.release,
                          PORT_A)
        self.assertWhole(allocator.device_name(PORT_A))

    def test_reconcile_goes_on_past_any_error(self):
        real = self.alloc.allocate

        def allocate(request):
            if request.port_id == PORT_A:
                raise KeyError('a bug')
            return real(request)
        self.alloc.allocate = allocate
        self.plans = [None, 0]
        r = self.alloc.reconcile([
            self.request(), self.request(port=PORT_B, vf=HW_VF,
                                         mac='fa:16:3e:00:00:02'),
            self.request(port='5b7d5f1e-3c56-4d5e-9a43-2f0c1b9e7a09',
                         mac='fa:16:3e:00:00:09')])
        self.assertEqual("KeyError: 'a bug'", r.failed[PORT_A])
        self.assertIn('the privsep daemon died',
                      r.failed['5b7d5f1e-3c56-4d5e-9a43-2f0c1b9e7a09'])
        self.assertEqual(['nvdpa-' + PORT_B], r.created)
        self.assertIn('Reconciling the vDPA device of port %s' % PORT_A,
                      self.log.output)
        self.assertIn('Traceback', self.log.output)


class TestVhostBackend(AllocatorTestCase):
    """The backend is read at creation; the node is never opened later."""

    def test_read_at_creation_then_kept(self):
        a = self.alloc.allocate(self.request())
        # A guest holds the node now: any open of ours would be refused.
        self.kernel.open_chardev(a.name)
        self.assertEqual(vhost.Backend(*self.mgmtdevs[0].backend),
                         self.alloc.vhost_backend(a))
        self.assertIsNotNone(self.kernel.devices[a.name].holder)

    def test_not_read_for_a_device_this_allocator_did_not_make(self):
        self.alloc.allocate(self.request())
        other = self.allocator()
        found = other.allocate(self.request())
        e = self.assertRaises(exception.VdpaBackendNotRead,
                              other.vhost_backend, found)
        self.assertIn(found.name, str(e))
        self.assertIn('not created by this process', str(e))

    def test_release_forgets_it(self):
        a = self.alloc.allocate(self.request())
        self.alloc.release(PORT_A)
        self.assertRaises(exception.VdpaBackendNotRead,
                          self.alloc.vhost_backend, a)
        b = self.alloc.allocate(self.request())
        self.assertEqual(vhost.Backend(*self.mgmtdevs[0].backend),
                         self.alloc.vhost_backend(b))

    def test_unreadable_node_is_no_backend(self):
        self.useFixture(fixtures.MockPatchObject(
            fake_kernel.FakeSysfs, '_ioctl',
            side_effect=OSError(25, 'Inappropriate ioctl for device')))
        a = self.alloc.allocate(self.request())
        self.assertEqual('vhost_vdpa', self.sysfs.driver(a.name))
        self.assertRaises(exception.VdpaBackendNotRead,
                          self.alloc.vhost_backend, a)

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

"""The test bed itself: the real kernel pieces and services are there.

These tests prove the bed with the reference tools (iproute2's ``vdpa``,
sysfs writes, libvirt-python, ovsdbapp), independently of nova-vdpa's own
kernel client, so a failure here points at the bed, not at the plugin.
"""

import errno
import glob
import os
import time

from tests.functional import base

SYS_VDPA = '/sys/bus/vdpa'


class TestKernel(base.BedTestCase):

    def test_vdpasim_net_is_a_net_management_device(self):
        mgmt = self.vdpa_json('mgmtdev', 'show')['mgmtdev']
        self.assertIn('vdpasim_net', mgmt)
        self.assertEqual(['net'], mgmt['vdpasim_net']['supported_classes'])
        self.assertEqual(3, mgmt['vdpasim_net']['max_supported_vqs'])

    def test_modules_loaded(self):
        with open('/proc/modules') as f:
            loaded = {line.split()[0] for line in f}
        for mod in ('vdpa', 'virtio_vdpa', 'vhost_vdpa', 'vdpa_sim_net',
                    'netdevsim', 'openvswitch'):
            self.assertIn(mod, loaded)

    def test_device_binds_to_vhost_vdpa_and_chardev_opens(self):
        name = 'bedtest0'
        self.run_cmd('vdpa', 'dev', 'add', 'name', name, 'mgmtdev',
                     'vdpasim_net', 'mac', '02:00:00:00:00:01')
        self.addCleanup(self.run_cmd, 'vdpa', 'dev', 'del', name)
        dev = os.path.join(SYS_VDPA, 'devices', name)
        # The bed loads virtio_vdpa first, so autoprobe picks it: the
        # situation nova-vdpa's binding has to correct.
        self.assertEqual('virtio_vdpa',
                         os.path.basename(os.readlink(dev + '/driver')))
        with open(dev + '/driver_override', 'w') as f:
            f.write('vhost_vdpa')
        with open(dev + '/driver/unbind', 'w') as f:
            f.write(name)
        with open(SYS_VDPA + '/drivers_probe', 'w') as f:
            f.write(name)
        self.assertEqual('vhost_vdpa',
                         os.path.basename(os.readlink(dev + '/driver')))

        children = glob.glob(dev + '/vhost-vdpa-*')
        self.assertEqual(1, len(children))
        node = '/dev/' + os.path.basename(children[0])
        with open(children[0] + '/dev') as f:
            major, minor = (int(x) for x in f.read().split(':'))
        self.assertEqual(os.makedev(major, minor), os.stat(node).st_rdev)

        fd = os.open(node, os.O_RDWR)
        try:
            # vhost-vdpa allows one opener at a time.
            e = self.assertRaises(OSError, os.open, node, os.O_RDWR)
            self.assertEqual(errno.EBUSY, e.errno)
        finally:
            os.close(fd)
        os.close(os.open(node, os.O_RDWR))


class TestConsole(base.BedTestCase):

    def test_kernel_warnings_reach_the_console_log(self):
        # What lets a run whose guest died (an oops, a panic) say why: the
        # host keeps the kernel console in the run folder.
        with open('/proc/consoles') as f:
            self.assertIn('hvc0', f.read())
        marker = 'nova-vdpa console check %d' % os.getpid()
        with open('/dev/kmsg', 'w') as f:
            f.write('<4>%s\n' % marker)
        log = os.path.join(os.environ['NOVA_VDPA_TESTBED_RESULTS'],
                           'console.log')
        deadline = time.monotonic() + 10
        seen = ''
        while marker not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
            with open(log) as f:
                seen = f.read()
        self.assertIn(marker, seen)


class TestLibvirt(base.BedTestCase):
    services = ('libvirt',)

    def test_libvirtd_answers_with_vdpa_capable_versions(self):
        import libvirt
        conn = libvirt.open('qemu:///system')
        self.addCleanup(conn.close)
        # <interface type='vdpa'> needs libvirt >= 6.9.0 and QEMU >= 5.1.0.
        self.assertGreaterEqual(conn.getLibVersion(), 6009000)
        self.assertGreaterEqual(conn.getVersion(), 5001000)
        self.assertIn('<arch>x86_64</arch>', conn.getCapabilities())
        # TCG guests: the bed has no usable KVM.
        self.assertIn('<domain>qemu</domain>', conn.getDomainCapabilities(
            None, 'x86_64', None, 'qemu'))


class TestOpenvSwitch(base.BedTestCase):
    services = ('ovs',)

    def test_ovsdb_and_vswitchd_answer(self):
        from ovsdbapp.backend.ovs_idl import connection
        from ovsdbapp.schema.open_vswitch import impl_idl
        idl = connection.OvsdbIdl.from_server(
            os.environ['NOVA_VDPA_TESTBED_OVSDB'], 'Open_vSwitch')
        api = impl_idl.OvsdbIdl(connection.Connection(idl=idl, timeout=60))
        api.add_br('br-bedtest').execute(check_error=True)
        self.addCleanup(api.del_br('br-bedtest').execute, check_error=True)
        self.assertIn('br-bedtest', api.list_br().execute(check_error=True))
        # ovs-vswitchd creates the bridge in the kernel datapath once it
        # has read the new row.
        deadline = time.monotonic() + 60
        while (not os.path.exists('/sys/class/net/br-bedtest')
               and time.monotonic() < deadline):
            time.sleep(0.2)
        self.assertTrue(os.path.exists('/sys/class/net/br-bedtest'))

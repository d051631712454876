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

"""Nova's failure paths, through Nova's API: nothing leaked, nothing re-made.

On the framework of test_lifecycle (Nova 34.0.0's functional tests, the
fake libvirt of :mod:`.fake_libvirt` above LibvirtVdpaDriver, a fake
kernel per host below it). "QEMU holds the device" is the fake kernel's
``open_chardev`` (exclusive; a deletion of a held device blocks, as on
the real kernel), opened for the chardev the guest's XML names.

* A detach really detaches: the interface leaves the domain, and then the
  device goes (Nova's fake libvirt alone lets a detach of a hot-plugged
  vdpa interface pass without running it).
* A failed os-vif unplug leaks no device, and the periodic resource
  update releases devices of ours that nothing on the host uses.
* Nova rebuilds a running guest's interface for a detach, a suspend and
  the detach before a live migration: the device the guest holds is used
  as it is, even when the port's MTU changed meanwhile; and a port moved
  to another instance never gets a device a guest still holds.
"""

import fixtures
from lxml import etree
from nova import context as nova_context
from nova import exception as nova_exception
from nova.network import model as network_model
from nova import objects
from nova.tests.functional.api import client as api_client
from oslo_utils.fixture import uuidsentinel as uuids

from nova_vdpa import allocator as vdpa_allocator
from tests.nova_functional import test_lifecycle


class _FailurePathsBase(test_lifecycle._LifecycleBase):
    """The lifecycle tests' hosts and ports; QEMU's holds; MTU changes."""

    # -- QEMU ----------------------------------------------------------------

    def hold(self, port, host='source'):
        """QEMU holds the port's device (as it does while it uses it)."""
        kernel = self.kernels.kernel(host)
        name = vdpa_allocator.device_name(port['id'])
        self._pids = getattr(self, '_pids', 4300) + 1
        kernel.open_chardev(name, pid=self._pids, cmdline=(
            'qemu-system-x86_64', '-name', 'guest=instance'))
        self.addCleanup(lambda: name in kernel.devices
                        and kernel.close_chardev(name))
        return name

    def let_go(self, port, host='source'):
        """QEMU closes the port's device."""
        self.kernels.kernel(host).close_chardev(
            vdpa_allocator.device_name(port['id']))

    def chardev(self, port, host='source'):
        kernel = self.kernels.kernel(host)
        return kernel.node(
            kernel.devices[vdpa_allocator.device_name(port['id'])])

    def domain_vdpa(self, server, host='source'):
        """{MAC: source dev} of the vdpa interfaces in the guest's XML."""
        conn = self.computes[host].driver._host.get_connection()
        dom = conn.lookupByUUIDString(server['id'])
        doc = etree.fromstring(dom.XMLDesc(0))
        return {i.find('mac').get('address'): i.find('source').get('dev')
                for i in doc.iter('interface') if i.get('type') == 'vdpa'}

    # -- Neutron -------------------------------------------------------------

    def change_mtu(self, server, mtu):
        """The network's MTU changes; the instance's cache shows it.

        As Neutron's port update and Nova's cache refresh leave it.
        """
        network = self.neutron.network_4
        self.neutron._networks[network['id']] = dict(
            self.neutron._networks[network['id']], mtu=mtu)
        context = nova_context.get_admin_context()
        instance = objects.Instance.get_by_uuid(
            context, server['id'], expected_attrs=['info_cache'])
        network_info = instance.info_cache.network_info
        for vif in network_info:
            vif['network']['meta']['mtu'] = mtu
        instance.info_cache.network_info = network_info
        instance.info_cache.save()

    def ours(self, host='source'):
        kernel = self.kernels.kernels.get(host)
        return {} if kernel is None else {
            name: dev for name, dev in kernel.devices.items()
            if vdpa_allocator.is_ours(name)}


class DetachPathTest(_FailurePathsBase):
    """Point 10: the detach path runs, on the fake as on libvirt."""

    def test_boot_time_interface_detached(self):
        self._start_hosts('source')
        server, ports = self._boot(ports=2)
        chardev = self.chardev(ports[0])
        self._detach_interface(server, ports[0]['id'])
        self.assertIn((ports[0]['mac_address'], chardev),
                      [d[1:] for d in self.vdpa_libvirt.detached])
        self.assertNotIn(ports[0]['mac_address'], self.domain_vdpa(server))
        self.assertNotIn(vdpa_allocator.device_name(ports[0]['id']),
                         self.ours())
        self.assertDevicesMatchPorts()

    def test_hot_plugged_interface_detached(self):
        self._start_hosts('source')
        server, _ = self._boot()
        port = self._vdpa_port('attached')
        self._attach_interface(server, port['id'])
        chardev = self.chardev(port)
        # the live XML names the device, as libvirt's does
        self.assertEqual(chardev,
                         self.domain_vdpa(server)[port['mac_address']])
        self._detach_interface(server, port['id'])
        self.assertEqual([(port['mac_address'], chardev)],
                         [d[1:] for d in self.vdpa_libvirt.detached])
        self.assertNotIn(port['mac_address'], self.domain_vdpa(server))
        self.assertNotIn(vdpa_allocator.device_name(port['id']),
                         self.ours())
        self.assertDevicesMatchPorts()


class FailedUnplugTest(_FailurePathsBase):
    """Point 1: a device is released whatever os-vif's unplug did."""

    def fail_os_vif_unplug(self):
        """os-vif's unplug fails, as Nova reports it.

        Nova's LibvirtFixture replaces ``_unplug_os_vif`` (which calls
        os-vif) with a mock: this one raises what the real one raises
        when os-vif's plugin fails.
        """
        return self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.vif.LibvirtGenericVIFDriver._unplug_os_vif',
            side_effect=nova_exception.InternalError(
                'Failure running os_vif plugin unplug method: ovs-vsctl '
                'timed out')))

    def test_delete_with_failing_unplug_releases(self):
        self._start_hosts('source')
        server, ports = self._boot()
        failing = self.fail_os_vif_unplug()
        self._delete_server(server)
        self.assertTrue(failing.mock.called)
        self.assertEqual({}, self.ours())
        # and the VF takes the next port's device
        failing.mock.side_effect = None
        port = self._vdpa_port('next')
        self._create_server(networks=[{'port': port['id']}])
        self.assertIn(vdpa_allocator.device_name(port['id']), self.ours())
        self.assertDevicesMatchPorts()


class OrphanSweepTest(_FailurePathsBase):
    """Point 1: devices of ours that nothing on the host uses go."""

    def orphan(self, port_id, vf='0000:06:00.1', host='source'):
        """A device of ours for a port nothing on this host has."""
        kernel = self.kernels.kernel(host)
        client = kernel.client()
        self.addCleanup(client.close)
        name = vdpa_allocator.device_name(port_id)
        client.create_device(name, 'pci/' + vf, mac='fa:16:3e:00:00:fe')
        kernel.sysfs().bind(name)
        return name

    def warnings(self, name):
        return [line for line in self.stdlog.logger.output.splitlines()
                if 'WARNING' in line and name in line
                and 'no instance on this host uses' in line]

    def test_orphan_released_at_the_second_periodic_update(self):
        self._start_hosts('source')
        server, ports = self._boot()
        name = self.orphan(uuids.gone_port)
        self._run_periodics()
        # an allocation in flight looks the same once: kept
        self.assertIn(name, self.ours())
        self._run_periodics()
        self.assertNotIn(name, self.ours())
        self.assertEqual(1, len(self.warnings(name)))
        self._run_periodics()
        self.assertEqual(1, len(self.warnings(name)))
        # the server's device stays
        self.assertDevicesMatchPorts()

    def test_held_orphan_stays(self):
        self._start_hosts('source')
        server, ports = self._boot()
        name = self.orphan(uuids.gone_port)
        kernel = self.kernels.kernel('source')
        kernel.open_chardev(name, pid=4545)
        self.addCleanup(lambda: name in kernel.devices
                        and kernel.close_chardev(name))
        self._run_periodics()
        self._run_periodics()
        self.assertIn(name, self.ours())
        self.assertEqual([], self.warnings(name))
        kernel.close_chardev(name)
        self._run_periodics()
        self._run_periodics()
        self.assertNotIn(name, self.ours())
        self.assertDevicesMatchPorts()

    def test_stopped_and_shelved_servers_keep_their_devices(self):
        self.flags(shelved_offload_time=-1)
        self._start_hosts('source')
        server, ports = self._boot()
        server = self._stop_server(server)
        self._run_periodics()
        self._run_periodics()
        self.assertDevicesMatchPorts()
        self._start_server(server)
        self._shelve_server(server, expected_state='SHELVED')
        self._run_periodics()
        self._run_periodics()
        self.assertDevicesMatchPorts()


class RunningGuestConfigTest(_FailurePathsBase):
    """Point 2: a held device is read, never re-made."""

    def test_detach_after_mtu_change(self):
        self._start_hosts('source')
        server, ports = self._boot(ports=2)
        for port in ports:
            self.hold(port)
        before = {p['id']: self.chardev(p) for p in ports}
        self.change_mtu(server, 1450)
        self._detach_interface(server, ports[0]['id'])
        self.assertNotIn(ports[0]['mac_address'], self.domain_vdpa(server))
        self.assertEqual([(ports[0]['mac_address'], before[ports[0]['id']])],
                         [d[1:] for d in self.vdpa_libvirt.detached])
        # the other port's device is the guest's, untouched
        self.assertEqual(before[ports[1]['id']], self.chardev(ports[1]))
        self.assertEqual(self.MTU, self.ours()[vdpa_allocator.device_name(
            ports[1]['id'])].mtu)
        # QEMU lets go of the detached device: it goes
        self.let_go(ports[0])
        self._run_periodics()
        self.assertNotIn(vdpa_allocator.device_name(ports[0]['id']),
                         self.ours())

    def test_suspend_resume_after_mtu_change(self):
        self._start_hosts('source')
        server, ports = self._boot()
        self.hold(ports[0])
        chardev = self.chardev(ports[0])
        self.change_mtu(server, 1450)
        server = self._suspend_server(server)
        self.assertEqual([(ports[0]['mac_address'], chardev)],
                         [d[1:] for d in self.vdpa_libvirt.detached])
        # the suspended guest's QEMU is gone
        self.let_go(ports[0])
        self._resume_server(server)
        # resumed with the port's device, made again for the new MTU
        # now that nothing held it
        name = vdpa_allocator.device_name(ports[0]['id'])
        self.assertEqual(1450, self.ours()[name].mtu)
        self.assertEqual({ports[0]['mac_address']: self.chardev(ports[0])},
                         self.domain_vdpa(server))

    def test_live_migration_detach_after_mtu_change(self):
        self._start_hosts('source', 'dest')
        server, ports = self._boot()
        self.hold(ports[0])
        chardev = self.chardev(ports[0])
        self.change_mtu(server, 1450)
        server = self._live_migrate(server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertIn((ports[0]['mac_address'], chardev),
                      [d[1:] for d in self.vdpa_libvirt.detached])
        name = vdpa_allocator.device_name(ports[0]['id'])
        self.assertEqual(1450, self.ours('dest')[name].mtu)
        # the source's QEMU lets go once the migration is over
        self.let_go(ports[0])
        self._run_periodics()
        self.assertNotIn(name, self.ours('source'))
        self.assertDevicesMatchPorts()

    def test_port_moved_while_another_guest_holds_its_device(self):
        self._start_hosts('source')
        first, ports = self._boot()
        port = ports[0]
        self.hold(port)
        chardev = self.chardev(port)
        # Nova and Neutron forget the port on the first server (a detach
        # whose guest never let go), the guest still has it
        context = nova_context.get_admin_context()
        instance = objects.Instance.get_by_uuid(
            context, first['id'], expected_attrs=['info_cache'])
        instance.info_cache.network_info = network_model.NetworkInfo([])
        instance.info_cache.save()
        self.neutron._ports[port['id']]['device_id'] = ''
        second = self._create_server(networks='none')
        self.assertRaises(api_client.OpenStackApiException,
                          self.api.attach_interface, second['id'],
                          {'interfaceAttachment': {'port_id': port['id']}})
        self.assertEqual({}, self.domain_vdpa(second))
        self.assertEqual({port['mac_address']: chardev},
                         self.domain_vdpa(first))
        self.assertEqual(chardev, self.chardev(port))

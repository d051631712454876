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

"""Deferred releases and the start-up reconciliation, through Nova's API.

Nova's server tests (API, conductor, scheduler, placement, nova-compute
with the fake libvirt) over LibvirtVdpaDriver, a fake kernel per host
below it (``tests.unit.compute.kernels``). A "holder" is the fake
kernel's ``open_chardev``: exclusive, and a deletion of a held device
blocks, as on the real kernel (tests/functional/test_allocator_deferred.py
holds a real fd). The periodic task is driven with Nova's
``_run_periodics()``, never waited for; a host reboot is the fake kernel
losing its devices followed by Nova's ``restart_compute_service``.
"""

import logging
from unittest import mock

from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.libvirt import test_pci_sriov_servers as upstream
from oslo_config import cfg
from oslo_utils.fixture import uuidsentinel as uuids

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa.compute import driver as vdpa_driver
from nova_vdpa import conf as vdpa_conf
from tests.nova_functional import fake_libvirt
from tests.unit.compute import kernels
from tests.unit import fake_kernel

CONF = cfg.CONF

VFS = ['0000:06:00.%d' % f for f in range(1, 5)]
#: the MTU the tests give the fake Neutron's network_4 (it has none)
MTU = 1400


def _pci_info():
    """One ConnectX-6 Dx PF with four VFs, as upstream's vDPA tests."""
    info = fakelibvirt.HostPCIDevicesInfo(num_pci=0, num_pfs=0, num_vfs=0)
    common = dict(bus=0x6, slot=0x0, numa_node=0, vf_ratio=4,
                  vend_id='15b3', vend_name='Mellanox Technologies',
                  driver_name='mlx5_core')
    info.add_device(dev_type='PF', function=0, iommu_group=40,
                    prod_id='101d', prod_name='MT2892 Family [ConnectX-6 Dx]',
                    **common)
    for idx in range(4):
        info.add_device(dev_type='VF', function=idx + 1,
                        iommu_group=idx + 41, parent=(0x6, 0x0, 0),
                        prod_id='101e',
                        prod_name='ConnectX Family mlx5Gen Virtual Function',
                        **common)
    return info


class VdpaServersBase(upstream._PCIServersWithMigrationTestBase):
    """Upstream VDPAServersTest's host and ports, devices made on demand.

    Each host's kernel has an mlx5-like management device per VF and a
    vdpasim_net, on which the tests put devices of their own.
    """

    ADMIN_API = True
    microversion = 'latest'
    PCI_DEVICE_SPEC = upstream.VDPAServersTest.PCI_DEVICE_SPEC
    PCI_ALIAS: list[str] = []

    def setUp(self):
        self.kernels = self.useFixture(kernels.FakeHostKernels(
            default=lambda: [fake_kernel.mlx5_vf(a) for a in VFS]
            + [fake_kernel.vdpasim_net()]))
        super().setUp()
        self.vdpa_libvirt = self.useFixture(fake_libvirt.VdpaInterfaces())
        self.neutron = self.useFixture(
            upstream.base.LibvirtNeutronFixture(self))
        self.neutron._networks[self.neutron.network_4['id']]['mtu'] = MTU
        self.records = []
        handler = logging.Handler(logging.INFO)
        handler.emit = self.records.append
        logger = logging.getLogger('nova_vdpa')
        logger.addHandler(handler)
        self.addCleanup(logger.removeHandler, handler)

    def _setup_compute_service(self):
        self.flags(compute_driver='nova_vdpa.LibvirtVdpaDriver')
        vdpa_conf.register_opts(CONF)
        # The fake VFs have no PF in switchdev mode and no representor.
        self.flags(offload_checks=False, group=vdpa_driver.option_group())
        # An empty list allows none: every VF and the simulator.
        self.flags(management_devices=['pci/' + a for a in VFS]
                   + ['vdpasim_net'], group=vdpa_driver.option_group())

    def start_vdpa_compute(self, hostname='compute-0'):
        return self.start_compute(hostname=hostname, pci_info=_pci_info())

    def create_vdpa_port(self, port_id, mac):
        port = {
            'id': port_id, 'network_id': self.neutron.network_4['id'],
            'status': 'ACTIVE', 'mac_address': mac,
            'fixed_ips': [{'ip_address': '192.168.4.%d' % int(mac[-2:]),
                           'subnet_id': self.neutron.subnet_4['id']}],
            'binding:vif_details': {}, 'binding:vif_type': 'ovs',
            'binding:vnic_type': 'vdpa'}
        self.neutron.create_port({'port': port})
        return port

    def kernel(self, hostname='compute-0'):
        return self.kernels.kernel(hostname)

    def driver(self, hostname='compute-0'):
        return self.computes[hostname].driver

    def client(self, hostname='compute-0'):
        client = self.kernel(hostname).client()
        self.addCleanup(client.close)
        return client

    def ours(self, hostname='compute-0'):
        return {n: d for n, d in self.kernel(hostname).devices.items()
                if vdpa_allocator.is_ours(n)}

    def log(self):
        return self.stdlog.logger.output

    def instance_of(self, text):
        """UUIDs of the instances given to nova_vdpa's lines with text."""
        return [getattr(getattr(r, 'instance', None), 'uuid', None)
                for r in self.records if text in r.getMessage()]


class TestDeferredRelease(VdpaServersBase):
    """A device still held when Nova unplugs it goes later, not never."""

    def setUp(self):
        super().setUp()
        self.start_vdpa_compute()
        self.port = self.create_vdpa_port(uuids.port_a, 'fa:16:3e:00:00:11')
        self.server = self._create_server(
            networks=[{'port': self.port['id']}])
        self.name = vdpa_allocator.device_name(self.port['id'])
        self.assertIn(self.name, self.ours())

    def hold(self):
        """QEMU keeps the chardev (a paused guest after a detach)."""
        kernel = self.kernel()
        kernel.open_chardev(self.name, pid=4242, cmdline=(
            'qemu-system-x86_64', '-name', 'guest=instance-00000001'))
        self.addCleanup(lambda: self.name in kernel.devices
                        and kernel.close_chardev(self.name))

    def assertDeferredThenReleased(self):
        kernel = self.kernel()
        self.assertIn(self.name, kernel.devices)
        self.assertIn('vDPA device %s of port %s' % (self.name,
                                                     self.port['id']),
                      self.log())
        self.assertIn('its release is deferred', self.log())
        self.assertIn('held by pid 4242', self.log())

        # Periodic tasks while held by the same process: the device stays,
        # and the first warning is the only one (once per state change,
        # not at every period; the retries log at DEBUG).
        self._run_periodics()
        self._run_periodics()
        self._run_periodics()
        self.assertIn(self.name, kernel.devices)
        self.assertEqual(1, self.log().count('its release is deferred'))
        self.assertNotIn(
            'Release of vDPA device %s of port %s (VF 0000:06:00.4, '
            '%s) still waits for' % (self.name, self.port['id'],
                                     kernel.node(kernel.devices[self.name])),
            self.log())

        kernel.close_chardev(self.name)
        self._run_periodics()
        self.assertNotIn(self.name, kernel.devices)
        self.assertIn('Deferred release of vDPA device %s of port %s done'
                      % (self.name, self.port['id']), self.log())
        self.assertEqual([], self.driver().vif_driver.releases.pending())

    def test_detach_completes_and_the_device_goes_later(self):
        self.hold()
        self._detach_interface(self.server, self.port['id'])
        port = self.neutron.show_port(self.port['id'])['port']
        self.assertEqual('', port['device_id'])
        self.assertDeferredThenReleased()

    def test_delete_completes_and_the_device_goes_later(self):
        self.hold()
        self._delete_server(self.server)
        self.assertDeferredThenReleased()

    def test_reattached_port_keeps_its_device(self):
        self.hold()
        self._detach_interface(self.server, self.port['id'])
        # The old holder lets go; the port is attached again before the
        # periodic task ran: the pending release must not take the device.
        self.kernel().close_chardev(self.name)
        self._attach_interface(self.server, self.port['id'])
        self.assertEqual([], self.driver().vif_driver.releases.pending())
        self._run_periodics()
        self.assertIn(self.name, self.ours())
        self.assertEqual(self.port['mac_address'],
                         self.ours()[self.name].mac)


class TestRestart(VdpaServersBase):
    """init_host: the kernel made to match Nova's instances."""

    def setUp(self):
        super().setUp()
        self.start_vdpa_compute()
        self.ports = [self.create_vdpa_port(uuids.port_a, 'fa:16:3e:00:00:21'),
                      self.create_vdpa_port(uuids.port_b, 'fa:16:3e:00:00:22')]
        self.servers = [self._create_server(networks=[{'port': p['id']}])
                        for p in self.ports]
        self.names = sorted(vdpa_allocator.device_name(p['id'])
                            for p in self.ports)
        self.assertEqual(self.names, sorted(self.ours()))

    def reboot_host(self):
        """What a host reboot leaves: no vDPA device at all."""
        client = self.client()
        for name in list(self.kernel().devices):
            client.delete_device(name)

    def device_of_ours(self, port_id, mgmtdev='vdpasim_net'):
        """A device of ours for a port no instance has (a crash's)."""
        name = vdpa_allocator.device_name(port_id)
        self.client().create_device(name, mgmtdev, mac='fa:16:3e:00:00:99')
        self.kernel().sysfs().bind(name)
        return name

    def operator_device(self, name='vdpa-op0'):
        self.client().create_device(name, 'vdpasim_net',
                                    mac='02:00:00:00:00:aa')
        self.kernel().sysfs().bind(name)
        return name

    def assertPortDevices(self):
        ours = self.ours()
        for port in self.ports:
            dev = ours[vdpa_allocator.device_name(port['id'])]
            self.assertEqual(port['mac_address'], dev.mac)
            self.assertEqual(MTU, dev.mtu)
            self.assertEqual('vhost_vdpa', dev.driver)
            pci_slot = self.neutron.show_port(
                port['id'])['port']['binding:profile']['pci_slot']
            self.assertEqual('pci/' + pci_slot, dev.mgmtdev.handle)

    def test_devices_recreated_before_guests_resume(self):
        self.flags(resume_guests_state_on_host_boot=True)
        self.reboot_host()
        seen = []
        real = vdpa_driver.LibvirtVdpaDriver.resume_state_on_host_boot

        def resume(driver, context, instance, *args, **kwargs):
            seen.append((instance.uuid, sorted(self.ours())))
            return real(driver, context, instance, *args, **kwargs)

        with mock.patch.object(vdpa_driver.LibvirtVdpaDriver,
                               'resume_state_on_host_boot', resume):
            # The guests are gone with the reboot: a new hypervisor.
            self.restart_compute_service('compute-0', pci_info=_pci_info(),
                                         keep_hypervisor_state=False)
        self.assertEqual(sorted(s['id'] for s in self.servers),
                         sorted(uuid for uuid, _ in seen))
        for _, names in seen:
            self.assertEqual(self.names, names)
        self.assertPortDevices()
        self.assertIn('Reconciled vDPA devices: 2 created, 0 kept, '
                      '0 deleted, 0 held, 0 failed.', self.log())
        for server in self.servers:
            self._wait_for_state_change(server, 'ACTIVE')

    def test_restart_keeps_devices_deletes_orphans_and_spares_operators(self):
        orphan = self.device_of_ours(uuids.gone_port)
        operator = self.operator_device()
        self.restart_compute_service('compute-0')
        self.assertEqual(self.names, sorted(self.ours()))
        self.assertPortDevices()
        self.assertIn(operator, self.kernel().devices)
        self.assertNotIn(orphan, self.kernel().devices)
        self.assertIn('Reconciled vDPA devices: 0 created, 2 kept, '
                      '1 deleted, 0 held, 0 failed.', self.log())

    def test_held_orphan_is_released_by_the_periodic_task(self):
        orphan = self.device_of_ours(uuids.gone_port)
        kernel = self.kernel()
        kernel.open_chardev(orphan, pid=5151)
        self.addCleanup(lambda: orphan in kernel.devices
                        and kernel.close_chardev(orphan))
        self.restart_compute_service('compute-0')
        self.assertIn(orphan, kernel.devices)
        (pending,) = self.driver().vif_driver.releases.pending()
        self.assertEqual(uuids.gone_port, pending.port_id)
        self._run_periodics()
        self.assertIn(orphan, kernel.devices)
        self.assertIn('Release of vDPA device %s of port %s' % (
            orphan, uuids.gone_port), self.log())
        kernel.close_chardev(orphan)
        self._run_periodics()
        self.assertNotIn(orphan, kernel.devices)
        self.assertEqual(self.names, sorted(self.ours()))

    def test_one_bad_port_does_not_stop_the_start(self):
        # The second port's VF lost its management device while the host
        # was down (the VF's vDPA support gone).
        self.reboot_host()
        bad_vf = self.neutron.show_port(
            self.ports[1]['id'])['port']['binding:profile']['pci_slot']
        kernel = self.kernel()
        kernel.mgmtdevs = [m for m in kernel.mgmtdevs if m.name != bad_vf]
        self.restart_compute_service('compute-0')
        self.assertEqual([vdpa_allocator.device_name(self.ports[0]['id'])],
                         sorted(self.ours()))
        self.assertIn('The vDPA device of port %s could not be made at '
                      'start-up' % self.ports[1]['id'], self.log())
        self.assertEqual([self.servers[1]['id']],
                         self.instance_of('could not be made at start-up'))
        self.assertIn('1 created, 0 kept, 0 deleted, 0 held, 1 failed',
                      self.log())

    def test_an_unexpected_error_on_one_port_does_not_stop_the_others(self):
        # A bug (not one of our typed errors) while the first port's
        # device is made: logged with its traceback, the second port
        # still gets its device and nova-compute starts.
        self.reboot_host()
        bad = self.ports[0]['id']
        cls = type(self.driver().vdpa_allocator)
        real = cls.allocate

        def allocate(allocator, request):
            if request.port_id == bad:
                raise KeyError('a bug in the allocator')
            return real(allocator, request)

        with mock.patch.object(cls, 'allocate', allocate):
            self.restart_compute_service('compute-0')
        self.assertEqual([vdpa_allocator.device_name(self.ports[1]['id'])],
                         sorted(self.ours()))
        self.assertIn('Reconciling the vDPA device of port %s' % bad,
                      self.log())
        self.assertIn("KeyError: 'a bug in the allocator'", self.log())
        self.assertEqual([self.servers[0]['id']],
                         self.instance_of('could not be made at start-up'))
        self.assertIn('1 created, 0 kept, 0 deleted, 0 held, 1 failed',
                      self.log())


class TestRestartDuringMigration(VdpaServersBase):
    """Neither host of an unconfirmed migration loses the port's device."""

    def test_verify_resize_survives_restarts_of_both_hosts(self):
        self.start_vdpa_compute('source')
        self.start_vdpa_compute('dest')
        port = self.create_vdpa_port(uuids.port_a, 'fa:16:3e:00:00:31')
        name = vdpa_allocator.device_name(port['id'])
        self.api.put_service(self.computes['dest'].service_ref.uuid,
                             {'status': 'disabled'})
        server = self._create_server(networks=[{'port': port['id']}])
        self.api.put_service(self.computes['dest'].service_ref.uuid,
                             {'status': 'enabled'})
        # As upstream's test_cold_migrate: the source keeps its guest (and
        # so its device) until the resize is confirmed.
        with mock.patch('nova.virt.libvirt.driver.LibvirtDriver'
                        '.migrate_disk_and_power_off', return_value='{}'):
            server = self._migrate_server(server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        before = {h: self.ours(h)[name] for h in ('source', 'dest')}
        # The instance is on dest now: only the migration tells the source
        # that its device is still in use.
        for host in ('source', 'dest'):
            self.restart_compute_service(host)
        for host, dev in before.items():
            after = self.ours(host)[name]
            self.assertEqual((dev.mac, dev.mtu, dev.mgmtdev.handle),
                             (after.mac, after.mtu, after.mgmtdev.handle),
                             host)
        self.assertEqual(2, self.log().count(
            'Reconciled vDPA devices: 0 created, 1 kept, 0 deleted'))
        self._confirm_resize(server)
        self.assertIn(name, self.ours('dest'))

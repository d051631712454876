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

"""Every instance operation, driven through Nova's API, against the kernel.

One test per operation. Each boots a server with vdpa ports on Nova 34.0.0's
functional framework (fake libvirt above LibvirtVdpaDriver, a fake kernel
per host below it), runs the operation the way Nova's own functional tests
do, and then checks, for every host, that the vDPA devices of ours in that
host's kernel are exactly the vdpa ports Neutron has bound to that host
(``binding:host_id``), each with its port's MAC and its network's MTU: no
device left behind, none missing, none twice.

The record is what Nova and Neutron hold (instances, ports and their
bindings) and what the kernel holds; nothing else is consulted. Periodic
tasks are run (``_run_periodics``), never waited for.

Live migration takes upstream's path for vdpa ports where a host's QEMU
cannot migrate them (the fake libvirt's QEMU 8.0), and wherever
``[nova_vdpa] live_migration_without_unplug`` is off: the source detaches
them before the migration (``_detach_direct_passthrough_vifs``) and the
destination attaches them after it (``_reattach_instance_vifs``); a failed,
aborted or refused (``pre_live_migration``) migration reattaches them on
the source. Those tests also check the order: a device exists before any
XML that names it is handed to libvirt, the source's device is released
only after the migration and once its guest no longer uses it, and after a
failure the source's device was never released and the destination holds
none. Where both hosts can (the option on, QEMU 10.0, a device that suspends),
the ports stay in the guest (:class:`LiveMigrationWithoutUnplugTest`): the same
checks, and no detach or attach of a vdpa interface at all.
"""

import os
import unittest
from unittest import mock

import fixtures
from lxml import etree
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.api import client as api_client
from nova.tests.functional.libvirt import test_pci_sriov_servers as upstream
from nova.virt.libvirt import utils as libvirt_utils
from oslo_utils.fixture import uuidsentinel as uuids

from nova_vdpa import allocator as vdpa_allocator
from tests.nova_functional import vdpa_base


class _LifecycleBase(vdpa_base.VdpaDriverMixin, upstream.VDPAServersTest):
    """Upstream's vdpa test class without its tests; the kernel check.

    test_vdpa_servers runs upstream's tests.
    """

    # Nova's fake hosts: 'source' and 'dest' both have upstream's PF with
    # four VFs, each VF a management device that takes one vDPA device.

    #: the MTU of upstream's physnet4 network here (upstream's has none):
    #: not the kernel's default, so that a device made without it shows
    MTU = 1400

    def setUp(self):
        super().setUp()
        # Fake libvirt sends no device-removed event: Nova waits this long
        # for it, then reads the live XML (as upstream's SR-IOV tests do).
        self.flags(device_detach_timeout=1, group='libvirt')
        network = self.neutron.network_4
        self.neutron._networks[network['id']] = dict(network, mtu=self.MTU)
        self._macs = iter('fa:16:3e:00:00:%02x' % i for i in range(1, 250))

    # -- ports and servers -------------------------------------------------

    def _vdpa_port(self, name):
        """A vdpa port on upstream's physnet4 network, with its own MAC."""
        mac = next(self._macs)
        port = {
            'id': getattr(uuids, name),
            'network_id': self.neutron.network_4['id'],
            'status': 'ACTIVE',
            'mac_address': mac,
            'fixed_ips': [{
                'ip_address': '192.168.4.%d' % (10 + int(mac[-2:], 16)),
                'subnet_id': self.neutron.subnet_4['id']}],
            'binding:vif_details': {},
            'binding:vif_type': 'ovs',
            'binding:vnic_type': 'vdpa',
        }
        self.neutron.create_port({'port': port})
        return port

    def _start_hosts(self, *hosts):
        for host in hosts:
            self.start_vdpa_compute(hostname=host)

    def _boot(self, ports=1, on='source'):
        """A server with ``ports`` vdpa ports, on host ``on``.

        The other hosts are disabled for the boot and enabled after it.
        """
        others = [h for h in self.computes if h != on]
        for host in others:
            self._disable(host)
        vdpa_ports = [self._vdpa_port('port%d' % i) for i in range(ports)]
        server = self._create_server(
            networks=[{'port': p['id']} for p in vdpa_ports])
        self.assertEqual(on, server['OS-EXT-SRV-ATTR:host'])
        for host in others:
            self._enable(host)
        self.assertDevicesMatchPorts()
        return server, vdpa_ports

    def _disable(self, host):
        self.api.put_service(self.computes[host].service_ref.uuid,
                             {'status': 'disabled'})

    def _enable(self, host):
        self.api.put_service(self.computes[host].service_ref.uuid,
                             {'status': 'enabled'})

    # -- the check ---------------------------------------------------------

    def _wanted(self, host):
        """{device name: (MAC, MTU)} the vdpa ports bound to host need."""
        wanted = {}
        for port in self.neutron._ports.values():
            if (port.get('binding:vnic_type') == 'vdpa'
                    and port.get('binding:host_id') == host):
                network = self.neutron._networks[port['network_id']]
                wanted[vdpa_allocator.device_name(port['id'])] = (
                    port['mac_address'], network['mtu'])
        return wanted

    def _devices(self, host):
        """{device name: (MAC, MTU)} of our devices in host's kernel."""
        kernel = self.kernels.kernels.get(host)
        if kernel is None:
            return {}
        return {name: (dev.mac, dev.mtu)
                for name, dev in kernel.devices.items()
                if vdpa_allocator.is_ours(name)}

    def assertDevicesMatchPorts(self, hosts=None):
        """Each host's kernel has exactly the devices its ports need."""
        if hosts is None:
            hosts = set(self.computes) | set(self.kernels.kernels)
        for host in sorted(hosts):
            self.assertEqual(self._wanted(host), self._devices(host),
                             'host %s: kernel devices (right) are not the '
                             'vdpa ports bound to it (left)' % host)

    def _binding_host(self, port):
        return self.neutron.show_port(port['id'])['port']['binding:host_id']


# Upstream's tests stay in test_vdpa_servers.py: hidden here, so that this
# module runs only its own.
for _name in unittest.TestLoader().getTestCaseNames(upstream.VDPAServersTest):
    setattr(_LifecycleBase, _name, None)


class LifecycleTest(_LifecycleBase):
    """One operation per test; the check after each step."""

    def test_boot(self):
        self._start_hosts('source', 'dest')
        server, ports = self._boot(ports=2)
        self.assertEqual('source', self._binding_host(ports[0]))
        self.assertEqual(2, len(self._devices('source')))
        self.assertDevicesMatchPorts()

    def test_reboot(self):
        self._start_hosts('source')
        server, _ = self._boot()
        self._reboot_server(server)
        self.assertDevicesMatchPorts()

    def test_hard_reboot(self):
        self._start_hosts('source')
        server, _ = self._boot()
        self._reboot_server(server, hard=True)
        self.assertDevicesMatchPorts()

    def test_stop_start(self):
        self._start_hosts('source')
        server, _ = self._boot()
        server = self._stop_server(server)
        self.assertDevicesMatchPorts()
        self._start_server(server)
        self.assertDevicesMatchPorts()

    def test_rebuild(self):
        self._start_hosts('source')
        server, _ = self._boot()
        self._rebuild_server(server, server['image']['id'])
        self.assertDevicesMatchPorts()

    def test_pause_unpause(self):
        self._start_hosts('source')
        server, _ = self._boot()
        self.api.post_server_action(server['id'], {'pause': {}})
        server = self._wait_for_state_change(server, 'PAUSED')
        self.assertDevicesMatchPorts()
        self.api.post_server_action(server['id'], {'unpause': {}})
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertDevicesMatchPorts()

    def test_suspend_resume(self):
        self._start_hosts('source')
        server, _ = self._boot()
        server = self._suspend_server(server)
        self.assertDevicesMatchPorts()
        self._resume_server(server)
        self.assertDevicesMatchPorts()

    def test_attach_interface(self):
        self._start_hosts('source')
        server, _ = self._boot()
        port = self._vdpa_port('attached')
        self.assertDevicesMatchPorts()
        self._attach_interface(server, port['id'])
        self.assertEqual('source', self._binding_host(port))
        self.assertEqual(2, len(self._devices('source')))
        self.assertDevicesMatchPorts()

    def test_detach_interface(self):
        self._start_hosts('source')
        server, ports = self._boot(ports=2)
        self._detach_interface(server, ports[0]['id'])
        self.assertEqual(1, len(self._devices('source')))
        self.assertDevicesMatchPorts()

    def _migrations_with_real_power_off(self):
        # Nova's real migrate_disk_and_power_off (power off, unplug, move
        # the disks) with the disk work out of the way: the instance path
        # is "shared" and no disk needs copying. Upstream's vdpa tests
        # replace the whole method, which also skips the source's unplug.
        # Nova moves the instance directory aside; the fake image backend
        # never made one.
        def no_disks(instance, block_device_info=None):
            os.makedirs(libvirt_utils.get_instance_path(instance),
                        exist_ok=True)
            return []

        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.driver.LibvirtDriver._is_path_shared_with',
            return_value=True))
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.driver.LibvirtDriver._get_instance_disk_info',
            side_effect=no_disks))

    def test_resize_confirm(self):
        self._start_hosts('source', 'dest')
        self._migrations_with_real_power_off()
        server, _ = self._boot()
        flavor = self._create_flavor(name='bigger', vcpu=2)
        server = self._resize_server(server, flavor)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertDevicesMatchPorts()
        self._confirm_resize(server)
        self.assertDevicesMatchPorts()

    def test_resize_revert(self):
        self._start_hosts('source', 'dest')
        self._migrations_with_real_power_off()
        server, _ = self._boot()
        flavor = self._create_flavor(name='bigger', vcpu=2)
        server = self._resize_server(server, flavor)
        self.assertDevicesMatchPorts()
        server = self._revert_resize(server)
        self.assertEqual('source', server['OS-EXT-SRV-ATTR:host'])
        self.assertDevicesMatchPorts()

    def test_cold_migrate(self):
        self._start_hosts('source', 'dest')
        self._migrations_with_real_power_off()
        server, _ = self._boot()
        server = self._migrate_server(server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertDevicesMatchPorts()
        self._confirm_resize(server)
        self.assertDevicesMatchPorts()

    def test_evacuate_and_source_comes_back(self):
        self._start_hosts('source', 'dest')
        server, ports = self._boot()
        self.computes['source'].stop()
        self.api.put_service(self.computes['source'].service_ref.uuid,
                             {'forced_down': True})
        # Since microversion 2.95 an evacuated server arrives stopped.
        server = self._evacuate_server(server, expected_host='dest')
        self.assertEqual('dest', self._binding_host(ports[0]))
        # The source is down: what its kernel holds waits for its return.
        self.assertDevicesMatchPorts(hosts=['dest'])
        self.restart_compute_service('source')
        self.api.put_service(self.computes['source'].service_ref.uuid,
                             {'forced_down': False})
        self.assertDevicesMatchPorts()
        # and the periodic inventory update on both hosts changes nothing
        self._run_periodics()
        self.assertDevicesMatchPorts()

    def test_shelve(self):
        self.flags(shelved_offload_time=-1)
        self._start_hosts('source')
        server, ports = self._boot()
        self._shelve_server(server, expected_state='SHELVED')
        self.assertDevicesMatchPorts()

    def test_shelve_offload(self):
        self.flags(shelved_offload_time=-1)
        self._start_hosts('source')
        server, ports = self._boot()
        server = self._shelve_server(server, expected_state='SHELVED')
        self._shelve_offload_server(server)
        self.assertIsNone(self._binding_host(ports[0]))
        self.assertDevicesMatchPorts()

    def test_unshelve_same_host(self):
        self._start_hosts('source')
        server, ports = self._boot()
        server = self._shelve_server(server)
        self.assertDevicesMatchPorts()
        server = self._unshelve_server(server)
        self.assertEqual('source', self._binding_host(ports[0]))
        self.assertDevicesMatchPorts()

    def test_unshelve_other_host(self):
        self._start_hosts('source', 'dest')
        server, ports = self._boot()
        server = self._shelve_server(server)
        self.assertDevicesMatchPorts()
        self._disable('source')
        server = self._unshelve_server(server)
        self.assertEqual('dest', self._binding_host(ports[0]))
        self.assertDevicesMatchPorts()

    def test_delete(self):
        self._start_hosts('source')
        server, _ = self._boot(ports=2)
        self._delete_server(server)
        self.assertEqual({}, self._devices('source'))
        self.assertDevicesMatchPorts()

    def test_delete_in_error(self):
        # The guest fails to start after its device was made: the build
        # fails on the only host and the server goes to ERROR.
        self._start_hosts('source')
        made = []

        def launch_fails(dom, flags=0):
            made.append(dict(self._devices('source')))
            raise fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError, 'QEMU failed to start',
                error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR)

        port = self._vdpa_port('port0')
        with mock.patch.object(fakelibvirt.Domain, 'createWithFlags',
                               launch_fails):
            server = self._create_server(networks=[{'port': port['id']}],
                                         expected_state='ERROR')
        self.assertEqual(
            [{vdpa_allocator.device_name(port['id']):
              (port['mac_address'], self.MTU)}], made[:1])
        self.assertDevicesMatchPorts()
        self._delete_server(server)
        self.assertDevicesMatchPorts()


class LiveMigrationTest(_LifecycleBase):
    """Upstream's hot-unplug path, and the order of device and XML."""

    def setUp(self):
        super().setUp()
        self._start_hosts('source', 'dest')
        self.server, self.ports = self._boot()
        #: (host, event, details) in the order they happened
        self.events = []
        self._watch_releases()
        self._watch_xml()

    def _host_of(self, conn):
        for host, compute in self.computes.items():
            if compute.driver._host.get_connection() is conn:
                return host
        raise AssertionError('unknown fake libvirt connection')

    def _guest_macs(self, host):
        conn = self.computes[host].driver._host.get_connection()
        return {nic['mac'] for dom in conn._vms.values()
                for nic in dom._def['devices']['nics']}

    def _watch_releases(self):
        """Record each release with the MACs the host's guests still use."""
        for host in ('source', 'dest'):
            allocator = self.computes[host].driver.vdpa_allocator

            def release(port_id, vf_address=None, _host=host,
                        _real=allocator.release):
                self.events.append((_host, 'release', (
                    port_id, frozenset(self._guest_macs(_host)))))
                return _real(port_id, vf_address)

            allocator.release = release

    def _watch_xml(self):
        """Record each vdpa interface XML handed to libvirt.

        With it, the MACs of our devices in that host's kernel then.
        """
        real_attach = fakelibvirt.Domain.attachDeviceFlags
        #: what libvirt's migration does: upstream's stub (the guest
        #: appears on the destination) unless a test fails it
        self.migrate_stub = fakelibvirt.Domain.migrateToURI3

        def vdpa_macs(xml):
            doc = etree.fromstring(xml)
            return {e.find('mac').get('address')
                    for e in doc.iter('interface')
                    if e.get('type') == 'vdpa'}

        def kernel_macs(host):
            return {mac for mac, _ in self._devices(host).values()}

        def attach(dom, xml, flags):
            host = self._host_of(dom._connection)
            self.events.append((host, 'attach', (
                frozenset(vdpa_macs(xml)), frozenset(kernel_macs(host)))))
            return real_attach(dom, xml, flags)

        def migrate(dom, dconnuri, params, flags):
            self.events.append(('dest', 'migrate', (
                frozenset(vdpa_macs(params['destination_xml'])),
                frozenset(kernel_macs('dest')))))
            return self.migrate_stub(dom, dconnuri, params, flags)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.attachDeviceFlags', attach))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3', migrate))

    def assertDevicesBeforeXml(self):
        for host, event, details in self.events:
            if event in ('attach', 'migrate'):
                named, present = details
                self.assertLessEqual(named, present,
                                     '%s: %s names a device not yet made'
                                     % (host, event))

    def assertReleasedAfterGuest(self):
        for host, event, details in self.events:
            if event == 'release':
                port_id, macs = details
                (port,) = [p for p in self.ports if p['id'] == port_id]
                self.assertNotIn(port['mac_address'], macs,
                                 '%s released %s while a guest used it'
                                 % (host, port_id))

    def test_live_migrate(self):
        server = self._live_migrate(self.server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual('dest', self._binding_host(self.ports[0]))
        self.assertDevicesMatchPorts()
        self.assertEqual({self.ports[0]['mac_address']},
                         self._guest_macs('dest'))
        self.assertDevicesBeforeXml()
        self.assertReleasedAfterGuest()
        # the source's device went after the migration, the destination's
        # came before its guest got the interface
        (migrated,) = self._events('dest', 'migrate')
        (attached,) = self._events('dest', 'attach')
        # upstream's hot-unplug path: the migrated XML has no vdpa interface
        self.assertEqual(frozenset(), self.events[migrated][2][0])
        self.assertLess(migrated, attached)
        self.assertTrue(self._events('source', 'release'))
        self.assertLess(migrated, min(self._events('source', 'release')))

    def _fail_migration(self, dom, dconnuri, params, flags):
        """QEMU's migration fails: the job ends failed.

        The guest never starts on the destination (upstream's migrate
        stub, failing).
        """
        uuid = etree.fromstring(params['destination_xml']).find('./uuid').text
        dom._connection.lookupByUUIDString(uuid).fail_job()

    def _events(self, host, event):
        return [i for i, e in enumerate(self.events)
                if e[:2] == (host, event)]

    def assertRolledBack(self, server, guest_checked=False):
        """The server, its port and its device are the source's again."""
        self.assertEqual('source', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual('source', self._binding_host(self.ports[0]))
        self.assertDevicesMatchPorts()
        if guest_checked:
            # the interface is back in the source's guest
            self.assertEqual({self.ports[0]['mac_address']},
                             self._guest_macs('source'))
            self.assertEqual(set(), self._guest_macs('dest'))
        self.assertDevicesBeforeXml()
        self.assertReleasedAfterGuest()
        self.assertEqual([], self._events('source', 'release'))

    def test_live_migrate_fails(self):
        self.migrate_stub = self._fail_migration
        server = self._live_migrate(self.server,
                                    migration_expected_state='failed')
        self.assertRolledBack(server, guest_checked=True)
        self.assertEqual(1, len(self._events('dest', 'migrate')))

    def _abort_migration(self, dom, dconnuri, params, flags):
        """The admin aborts the migration while it runs.

        A DELETE on the server's migration, as in upstream's abort tests;
        libvirt then reports the job cancelled.
        """
        server_id = self.server['id']
        (migration,) = [m for m in self.api.get_migrations()
                        if m['instance_uuid'] == server_id
                        and m['migration_type'] == 'live-migration']
        self.api.delete_migration(server_id, migration['id'])

    def test_live_migrate_aborted(self):
        def abort_job(dom):
            dom._job_type = fakelibvirt.VIR_DOMAIN_JOB_CANCELLED

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.abortJob', abort_job))
        self.migrate_stub = self._abort_migration
        server = self._live_migrate(self.server,
                                    migration_expected_state='cancelled')
        self.assertRolledBack(server, guest_checked=True)

    def test_live_migrate_without_multiple_port_bindings(self):
        # Neutron without "binding-extended": Nova's conductor refuses to
        # live-migrate a port with a PCI device before the destination is
        # asked, so no device is made there and the source's stays.
        self.useFixture(fixtures.MockPatch(
            'nova.network.neutron.API.has_port_binding_extension',
            return_value=False))
        # Before 2.34 the API waits for the conductor's checks and answers
        # their reason (later ones answer 202); a forced host skips the
        # scheduler, which would turn the reason into "No valid host".
        self.api.microversion = '2.30'
        ex = self.assertRaises(
            api_client.OpenStackApiException, self.api.post_server_action,
            self.server['id'], {'os-migrateLive': {
                'host': 'dest', 'block_migration': 'auto', 'force': True}})
        self.assertEqual(400, ex.response.status_code)
        self.assertIn('Neutron does not support required port binding '
                      'extension', str(ex))
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertRolledBack(server, guest_checked=True)
        self.assertEqual([], self._events('dest', 'migrate'))
        self.assertEqual({}, self._devices('dest'))

    def test_live_migrate_fails_at_destination(self):
        # pre_live_migration on the destination fails after plugging.
        real = self.computes['dest'].driver.pre_live_migration

        def pre_live_migration(*args, **kwargs):
            real(*args, **kwargs)
            raise fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError, 'pre_live_migration failed',
                error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR)

        self.computes['dest'].driver.pre_live_migration = pre_live_migration
        self.api.post_server_action(self.server['id'], {'os-migrateLive': {
            'host': None, 'block_migration': 'auto'}})
        # The rollback ends with the migration 'failed'; the exception then
        # reaches the decorator that sets it to 'error'. Either is after
        # the rollback.
        self._wait_for_migration_status(self.server, ['failed', 'error'])
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertRolledBack(server)


class LiveMigrationWithoutUnplugTest(LiveMigrationTest):
    """Both hosts' QEMU migrates vdpa interfaces: the ports stay in.

    The failure tests of :class:`LiveMigrationTest` run here too, on this
    path: the destination's device, made by ``pre_live_migration``, must
    be gone after the rollback (here Nova calls no
    ``rollback_live_migration_at_destination``: the hosts share their
    instance path, so the periodic update releases it).
    """

    QEMU_10 = 10000000
    #: [nova_vdpa] live_migration_without_unplug is set on both hosts
    WITHOUT_UNPLUG = True

    def _start_hosts(self, *hosts):
        if self.WITHOUT_UNPLUG:
            self.flags(live_migration_without_unplug=True, group='nova_vdpa')
        super()._start_hosts(*hosts)

    def setUp(self):
        super().setUp()
        for host in ('source', 'dest'):
            self._qemu(host, self.QEMU_10)
        real_detach = fakelibvirt.Domain.detachDeviceFlags

        def detach(dom, xml, flags):
            host = self._host_of(dom._connection)
            if etree.fromstring(xml).get('type') == 'vdpa':
                self.events.append((host, 'detach', xml))
            return real_detach(dom, xml, flags)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.detachDeviceFlags', detach))
        # Real libvirt has removed the source's domain (UNDEFINE_SOURCE)
        # when Nova calls post_live_migration_at_source; the fake keeps it
        # running, with the interface that now stays in it.
        source = self.computes['source'].driver
        real_post = source.post_live_migration_at_source

        def post_at_source(context, instance, network_info):
            conn = source._host.get_connection()
            for key, dom in list(conn._vms.items()):
                if dom.UUIDString() == instance.uuid:
                    del conn._vms[key]
            return real_post(context, instance, network_info)

        source.post_live_migration_at_source = post_at_source

    def _qemu(self, host, version):
        conn = self.computes[host].driver._host.get_connection()
        conn.fakeVersion = version

    def assertRolledBack(self, server, guest_checked=False):
        # Nova's rollback ran; the destination's device goes at the next
        # periodic update
        self._run_periodics()
        super().assertRolledBack(server, guest_checked)
        # the interface never left the source's guest
        self.assertEqual([], self._events('source', 'detach'))

    def test_live_migrate(self):
        port = self.ports[0]
        name = vdpa_allocator.device_name(port['id'])
        xmls = []
        real = self.migrate_stub

        def migrate(dom, dconnuri, params, flags):
            xmls.append(params['destination_xml'])
            return real(dom, dconnuri, params, flags)

        self.migrate_stub = migrate
        server = self._live_migrate(self.server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual('dest', self._binding_host(port))
        self.assertDevicesMatchPorts()
        self.assertDevicesBeforeXml()
        self.assertReleasedAfterGuest()
        # no hot-unplug: nothing detached on the source, nothing attached
        # on the destination; the migrated XML names the destination's
        # device, made before it
        self.assertEqual([], self._events('source', 'detach'))
        self.assertEqual([], self._events('dest', 'attach'))
        (migrated,) = self._events('dest', 'migrate')
        self.assertEqual(frozenset({port['mac_address']}),
                         self.events[migrated][2][0])
        dest = self.kernels.kernel('dest')
        chardev = dest.node(dest.devices[name])
        (xml,) = xmls
        (iface,) = etree.fromstring(xml).iter('interface')
        self.assertEqual('vdpa', iface.get('type'))
        self.assertEqual(chardev, iface.find('source').get('dev'))
        # the designer's interface, not upstream's two elements (Nova
        # keeps <mtu> out when the source's XML has none, as the fake's)
        self.assertEqual('virtio', iface.find('model').get('type'))
        self.assertLess(migrated, min(self._events('source', 'release')))
        # the arrived instance's device is not swept by the destination
        self.assertEqual([], self.computes['dest'].driver.vdpa_incoming
                         .migrations())
        self._run_periodics()
        self.assertDevicesMatchPorts()

    def test_live_migrate_fails(self):
        super().test_live_migrate_fails()
        # the XML named the destination's device, released after it
        (migrated,) = self._events('dest', 'migrate')
        self.assertEqual(frozenset({self.ports[0]['mac_address']}),
                         self.events[migrated][2][0])
        self.assertLess(migrated, min(self._events('dest', 'release')))

    def test_live_migrate_fails_destination_cleaned(self):
        # Without a shared instance path Nova calls the destination's
        # rollback_live_migration_at_destination: its unplug releases the
        # device at once, with no periodic update.
        self.useFixture(fixtures.MockPatch(
            'nova.compute.manager.ComputeManager.'
            '_live_migration_cleanup_flags', return_value=(True, False)))
        self.migrate_stub = self._fail_migration
        server = self._live_migrate(self.server,
                                    migration_expected_state='failed')
        self.assertEqual('source', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual({}, self._devices('dest'))
        self.assertEqual([], self.computes['dest'].driver.vdpa_incoming
                         .migrations())
        self.assertDevicesMatchPorts()
        self.assertEqual([], self._events('source', 'detach'))
        self.assertEqual({self.ports[0]['mac_address']},
                         self._guest_macs('source'))

    def _assert_unplug_path(self):
        server = self._live_migrate(self.server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertDevicesMatchPorts()
        self.assertDevicesBeforeXml()
        self.assertReleasedAfterGuest()
        (migrated,) = self._events('dest', 'migrate')
        self.assertEqual(frozenset(), self.events[migrated][2][0])
        # (Nova detaches from the live domain and from its definition)
        self.assertTrue(self._events('source', 'detach'))
        self.assertEqual(1, len(self._events('dest', 'attach')))

    def test_source_qemu_cannot(self):
        # the destination made and recorded its device; the source's QEMU
        # cannot migrate the interface: upstream's path, the same device
        self._qemu('source', 8002002)
        self._assert_unplug_path()

    def test_destination_qemu_cannot(self):
        self._qemu('dest', 8002002)
        self._assert_unplug_path()

    def test_device_cannot_suspend(self):
        # the destination's management devices make devices that cannot
        # be suspended: its device is released at once, upstream's path
        for m in self.kernels.kernel('dest').mgmtdevs:
            m.backend = (0x0e, 2, 2)  # no VHOST_BACKEND_F_SUSPEND
        made = []
        real = self.computes['dest'].driver.vif_driver.releases.allocate

        def allocate(request):
            made.append(request.port_id)
            return real(request)

        self.computes['dest'].driver.vif_driver.releases.allocate = allocate
        self._assert_unplug_path()
        # made in pre_live_migration, released, made again at the attach
        self.assertEqual([self.ports[0]['id']] * 2, made)
        (released,) = self._events('dest', 'release')
        self.assertLess(released, min(self._events('dest', 'migrate')))

    def test_device_without_isolated_cvq(self):
        for m in self.kernels.kernel('dest').mgmtdevs:
            m.backend = (0x3e, 1, 1)  # one group: CVQ shares the data ASID
        self._assert_unplug_path()

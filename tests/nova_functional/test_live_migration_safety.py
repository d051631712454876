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

"""Live migration without hot-unplug is safe by construction.

Through Nova's API, on the hosts and checks of
:mod:`tests.nova_functional.test_lifecycle` (both hosts' QEMU can migrate
vdpa interfaces): the option is off by default; a record this release
cannot read, or whose values are bad, sends the port down upstream's path
and never fails the migration; a record in a port's ``binding:profile``
is ignored outside the destination XML of its own migration; a source
device that differs from the destination's sends the port down upstream's
path; prepared migrations are tracked by migration (a quick re-migration
keeps its device, a crashed source's migration is cleaned up once Nova
marks it failed); a restart of the destination keeps the devices of a
migration in progress.
"""

import logging
import time
import unittest

import fixtures
from lxml import etree
from nova import context as nova_context
from nova import objects
from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_utils.fixture import uuidsentinel as uuids

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa.compute import migration
from tests.nova_functional import test_lifecycle


class _SafetyBase(test_lifecycle.LiveMigrationWithoutUnplugTest):
    """The lifecycle test's hosts and checks, without its tests."""

    def setUp(self):
        super().setUp()
        self.records = []
        handler = logging.Handler(logging.INFO)
        handler.emit = self.records.append
        logger = logging.getLogger('nova_vdpa')
        logger.addHandler(handler)
        self.addCleanup(logger.removeHandler, handler)

    def _logged(self, text):
        return [r.getMessage() for r in self.records
                if text in r.getMessage()]

    def _tamper(self, change):
        """The destination's records, changed by ``change(record)``."""
        driver = self.computes['dest'].driver
        real = driver.pre_live_migration

        def pre_live_migration(*args, **kwargs):
            migrate_data = real(*args, **kwargs)
            for vif in migrate_data.vifs:
                if migration.PROFILE_KEY in vif.profile:
                    profile = dict(vif.profile)
                    profile[migration.PROFILE_KEY] = change(
                        dict(profile[migration.PROFILE_KEY]))
                    vif.profile = profile
            return migrate_data

        driver.pre_live_migration = pre_live_migration

    def _wait_for(self, predicate):
        # as Nova's _wait_for_migration_status: poll, never assert a time;
        # longer, for a migration that restarts a service meanwhile
        for _ in range(600):
            if predicate():
                return
            time.sleep(0.1)
        self.fail('timed out')

    def _migrations(self):
        return [m for m in self.api.get_migrations()
                if m['instance_uuid'] == self.server['id']
                and m['migration_type'] == 'live-migration']


for _name in unittest.TestLoader().getTestCaseNames(
        test_lifecycle.LiveMigrationWithoutUnplugTest):
    setattr(_SafetyBase, _name, None)


class OptionTest(_SafetyBase):

    WITHOUT_UNPLUG = False

    def test_off_by_default(self):
        # the option's default, on both hosts: upstream's path, and the
        # destination makes no device before the migration
        self.assertFalse(self.computes['dest'].driver.vdpa_without_unplug)
        self._assert_unplug_path()
        self.assertEqual([], self._events('dest', 'release'))

    def test_on_at_the_destination_only(self):
        # the destination records its device; the source, whose option is
        # off, detaches the port all the same
        self.computes['dest'].driver.vdpa_without_unplug = True
        self._assert_unplug_path()
        self.assertTrue(self._logged(
            'live_migration_without_unplug is off on this host'))


class RecordTest(_SafetyBase):
    """A record this release cannot read: upstream's path, never a failure.

    Written by the destination, changed on its way to the source.
    """

    def _assert_ignored(self, change, logged):
        self._tamper(change)
        self._assert_unplug_path()
        self.assertTrue(self._logged(logged), self._logged('hot-unplug'))

    def test_another_version(self):
        self._assert_ignored(lambda r: dict(r, version=2),
                             'is of version 2, this release reads version 1')

    def test_without_version(self):
        # an older release's record: the fields this one reads, less two
        self._assert_ignored(
            lambda r: {k: v for k, v in r.items()
                       if k not in ('version', 'migration')},
            "fields ['migration', 'version'] missing")

    def test_bad_chardev(self):
        self._assert_ignored(lambda r: dict(r, chardev='/dev/sda'),
                             'is not a /dev/vhost-vdpa-N path')

    def test_bad_queue_pairs(self):
        self._assert_ignored(lambda r: dict(r, max_queue_pairs='many'),
                             "'many'")

    def test_another_migration(self):
        self._assert_ignored(lambda r: dict(r, migration=uuids.other),
                             'its record was made for migration %s'
                             % uuids.other)


class ForgedProfileTest(_SafetyBase):
    """A record in a port's binding:profile, outside any migration."""

    def test_spawn_gets_its_own_device(self):
        xmls = []
        real_define = fakelibvirt.Connection.defineXML

        def define(conn, xml):
            xmls.append(xml)
            return real_define(conn, xml)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Connection.defineXML', define))
        forged = {
            'chardev': '/dev/vhost-vdpa-99', 'max_queue_pairs': 1,
            'max_vq_size': 256, 'features': None, 'mtu': self.MTU,
            'libvirt_version': 11003000, 'qemu_version': self.QEMU_10,
            'kind': 'pci vendor 0x15b3'}
        ports = []
        # this release's format, and the one the previous release read
        for name, record in (
                ('forged', dict(forged, version=1,
                                migration=uuids.migration)),
                ('forged_old', forged)):
            port = self._vdpa_port(name)
            self.neutron.update_port(port['id'], {'port': {
                'binding:profile': {migration.PROFILE_KEY: record}}})
            ports.append(port)
        self._disable('dest')
        server = self._create_server(
            networks=[{'port': p['id']} for p in ports])
        self._enable('dest')
        self.assertEqual('source', server['OS-EXT-SRV-ATTR:host'])
        # each port has its own device, and the guest names it
        self.assertDevicesMatchPorts()
        kernel = self.kernels.kernel('source')
        sources = {iface.find('mac').get('address'):
                   iface.find('source').get('dev')
                   for iface in etree.fromstring(xmls[-1]).iter('interface')}
        for port in ports:
            device = kernel.devices[vdpa_allocator.device_name(port['id'])]
            self.assertEqual(kernel.node(device),
                             sources[port['mac_address']])
        self.assertEqual(2, len(self._logged('is ignored: it is read only '
                                             'while a live migration')))


class DeviceComparisonTest(_SafetyBase):
    """The source's device must be the destination's, but for its node."""

    def test_features_differ(self):
        # the destination's management devices offer one feature less
        # (VIRTIO_NET_F_CTRL_VLAN): its device is made without it
        for m in self.kernels.kernel('dest').mgmtdevs:
            m.supported_features &= ~(1 << 19)
        self._assert_unplug_path()
        (why,) = self._logged('its device here has features')
        self.assertIn("the destination's", why)

    def test_mtu_differs(self):
        self._tamper(lambda r: dict(r, mtu=r['mtu'] - 100))
        self._assert_unplug_path()
        self.assertTrue(self._logged('its device here has mtu %d, the '
                                     "destination's %d"
                                     % (self.MTU, self.MTU - 100)))

    def test_queue_pairs_differ(self):
        self._tamper(lambda r: dict(r, max_queue_pairs=4))
        self._assert_unplug_path()
        self.assertTrue(self._logged('its device here has max queue pairs '
                                     "1, the destination's 4"))


class TrackingTest(_SafetyBase):
    """Prepared migrations are tracked by migration, not by instance."""

    def _dest_device(self):
        return self._devices('dest').get(
            vdpa_allocator.device_name(self.ports[0]['id']))

    def test_quick_remigration_keeps_its_device(self):
        # The first migration fails; its cleanup on the destination (the
        # periodic sweep, and Nova's rollback there, which may arrive
        # late) comes while a second migration to the same host is
        # prepared: that one's device stays.
        real = self.migrate_stub
        self.migrate_stub = self._fail_migration
        self._live_migrate(self.server, migration_expected_state='failed')
        (first,) = self._migrations()
        # the fake domain keeps its failed job; the next one starts afresh
        conn = self.computes['source'].driver._host.get_connection()
        conn.lookupByUUIDString(self.server['id'])._job_type = (
            fakelibvirt.VIR_DOMAIN_JOB_NONE)
        context = nova_context.get_admin_context()
        late_rollback = objects.LibvirtLiveMigrateData(
            migration=objects.Migration.get_by_uuid(context, first['uuid']),
            is_shared_instance_path=True)
        dest = self.computes['dest'].driver
        seen = []

        def cleanup_then_migrate(dom, dconnuri, params, flags):
            instance = objects.Instance.get_by_uuid(context,
                                                    self.server['id'])
            dest.rollback_live_migration_at_destination(
                context, instance, instance.get_network_info(), None,
                destroy_disks=False, migrate_data=late_rollback)
            self._run_periodics()
            seen.append(self._dest_device())
            return real(dom, dconnuri, params, flags)

        self.migrate_stub = cleanup_then_migrate
        server = self._live_migrate(self.server)
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertIsNotNone(seen[0])
        self.assertDevicesMatchPorts()
        self.assertEqual([], dest.vdpa_incoming.migrations())

    def test_crashed_source_cleaned_up_when_failed(self):
        # The source dies during the migration: Nova leaves it 'running'
        # until the source's restart marks it 'error'.
        self.migrate_stub = self._fail_migration
        rollback = self.useFixture(fixtures.MockPatch(
            'nova.compute.manager.ComputeManager._rollback_live_migration'))
        self.api.post_server_action(self.server['id'], {'os-migrateLive': {
            'host': None, 'block_migration': 'auto'}})
        self._wait_for(lambda: rollback.mock.called)
        self._wait_for_migration_status(self.server, ['running'])
        self.assertTrue(self.computes['dest'].driver.vdpa_incoming
                        .migrations())
        self._run_periodics()
        self.assertIsNotNone(self._dest_device())
        self.restart_compute_service('source')
        self._wait_for_migration_status(self.server, ['error'])
        self._run_periodics()
        self.assertIsNone(self._dest_device())
        self.assertTrue(self._logged('which failed'))
        self.assertEqual([], self.computes['dest'].driver.vdpa_incoming
                         .migrations())


class RestartTest(_SafetyBase):
    """A restart of the destination before QEMU opens the device."""

    def test_restart_keeps_the_migrations_devices(self):
        # Another server takes the destination's first free VF: the
        # migration gets another VF than the one the source's binding
        # (the instance's info cache) names.
        self._disable('source')
        other = self._vdpa_port('other')
        self._create_server(networks=[{'port': other['id']}])
        self._enable('source')
        port = self.ports[0]
        name = vdpa_allocator.device_name(port['id'])
        dest_kernel = self.kernels.kernel('dest')
        seen = {}
        real = self.migrate_stub

        def restart_then_migrate(dom, dconnuri, params, flags):
            device = dest_kernel.devices[name]
            cached = self.neutron.show_port(port['id'])['port'][
                'binding:profile']['pci_slot']
            seen['vfs'] = (cached, device.mgmtdev.name)
            self.restart_compute_service('dest')
            seen['kept'] = name in dest_kernel.devices
            seen['remembered'] = (self.computes['dest'].driver
                                  .vdpa_incoming.migrations())
            return real(dom, dconnuri, params, flags)

        self.migrate_stub = restart_then_migrate
        self.api.post_server_action(self.server['id'], {'os-migrateLive': {
            'host': None, 'block_migration': 'auto'}})
        self._wait_for(lambda: [m for m in self._migrations()
                                if m['status'] == 'completed'])
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        cached, used = seen['vfs']
        self.assertNotEqual(cached, used)
        self.assertTrue(seen['kept'])
        (migrated,) = self._migrations()
        self.assertEqual([migrated['uuid']], seen['remembered'])
        self.assertEqual('dest', server['OS-EXT-SRV-ATTR:host'])
        self.assertDevicesMatchPorts()
        self.assertEqual([], self._events('source', 'detach'))

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

"""LibvirtVdpaDriver under Nova's test bases, on Nova's fake libvirt and a
fake kernel: what the kernel and the guest XML end up with.

These are the driver's unit tests, but they live beside VDPAServersTest and
run in the nova-functional env: importing Nova's test code patches the
process with eventlet and registers options on the global configuration,
which would leak into the project's other unit tests sharing a worker.

The host's offload side (``[nova_vdpa] offload_checks``) uses the fakes of
the offload unit tests: a sysfs tree with the PF, its VFs and their
representors (tests/unit/test_network_representors.py), devlink eswitch
modes, and an OVSDB holding Interface rows as ovsdb-server leaves them
(tests/unit/test_network_checks.py); each is checked against the real
kernel and Open vSwitch in tests/functional/test_network_offload.py.
"""

import logging
import os
import socket
from unittest import mock

import fixtures
from lxml import etree
from nova import exception as nova_exception
from nova.network import model as network_model
from nova import objects
from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.unit import fake_instance
from nova.virt import driver as virt_driver
from nova.virt import fake as fake_virt
from oslo_serialization import jsonutils
from oslo_utils.fixture import uuidsentinel as uuids

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa.compute import driver as vdpa_driver
from nova_vdpa.compute import install
from nova_vdpa.compute import overrides
from nova_vdpa.compute import releases
from nova_vdpa.compute import vif as vdpa_vif
from nova_vdpa import conf as vdpa_conf
from nova_vdpa import exception
from nova_vdpa.kernel import devlink
from nova_vdpa.kernel import netdev
from nova_vdpa.network import ovsdb
from nova_vdpa.privsep import channel as privsep_channel
from tests.unit.compute import kernels
from tests.unit import fake_kernel
from tests.unit import fake_network

PF = '0000:81:00.0'
VFS = ['0000:81:00.%d' % i for i in range(1, 5)]
MAC = 'fa:16:3e:11:22:33'
UPLINK = 'enp129s0f0np0'
#: the representors of VFS[0] and VFS[1]; VFS[2] and VFS[3] have none
REPS = ['enp129s0f0npf0vf0', 'enp129s0f0npf0vf1']


def make_vif(port_id=uuids.port, vf=VFS[0], mtu=1400):
    network = network_model.Network(
        id=uuids.network, bridge='br-int', label='net', mtu=mtu,
        subnets=[])
    return network_model.VIF(
        id=port_id, address=MAC, network=network, type='ovs',
        vnic_type=network_model.VNIC_TYPE_VDPA,
        details={'port_filter': True}, devname='tap-' + port_id[:8],
        profile={'pci_slot': vf, 'pci_vendor_info': '15b3:101e',
                 'physical_network': 'physnet4'})


class FakeDevlink(fake_network.FakeDevlink):
    """The offload tests' devlink, closable like DevlinkClient."""

    def close(self):
        pass


class FakeOvsdb(fake_network.FakeOvsdb):
    """The offload tests' OVSDB, closable like OvsdbReader."""

    def close(self):
        pass


class OffloadHost(fixtures.Fixture):
    """The PF in switchdev mode, VFS[0] and VFS[1] with a representor."""

    def _setUp(self):
        tree = fake_network.SysfsTree(self.useFixture(fixtures.TempDir()).path)
        tree.pf(PF, UPLINK, fake_network.SWITCH, vfs=VFS)
        for i, rep in enumerate(REPS):
            tree.netdev(rep, fake_network.SWITCH, 'pf0vf%d' % i)
        netdevs = netdev.Netdevs(tree.root)
        self.devlink = FakeDevlink({'pci/' + PF:
                                    devlink.ESWITCH_MODE_SWITCHDEV})
        self.useFixture(fixtures.MockPatch(
            'nova_vdpa.kernel.netdev.Netdevs', lambda: netdevs))
        self.useFixture(fixtures.MockPatch(
            'nova_vdpa.kernel.devlink.DevlinkClient', lambda: self.devlink))
        self.useFixture(fixtures.MockPatch(
            'pyroute2.ethtool.ioctl.IoctlEthtool',
            fake_network.FakeIoctlEthtool))
        self.useFixture(fixtures.MonkeyPatch(
            'tests.unit.test_network_representors.FakeIoctlEthtool.netdevs',
            {name: {'hw-tc-offload': (True, True)}
             for name in [UPLINK] + REPS}))
        #: the OVSDB the driver reads; None: the real reader is used
        self.ovsdb = FakeOvsdb()
        real = ovsdb.OvsdbReader
        self.useFixture(fixtures.MockPatch(
            'nova_vdpa.network.ovsdb.OvsdbReader',
            lambda *a, **kw: (self.ovsdb if self.ovsdb is not None
                              else real(*a, **kw))))


class LogRecords(fixtures.Fixture):
    """nova_vdpa's log records, with level and instance, as text."""

    def _setUp(self):
        # Sets the level; its own handler keeps the records from the
        # test's standard log.
        self.useFixture(fixtures.FakeLogger('nova_vdpa', level=logging.INFO))
        self.records = []
        handler = logging.Handler(logging.INFO)
        handler.emit = self.records.append  # type: ignore[method-assign]
        logger = logging.getLogger('nova_vdpa')
        logger.addHandler(handler)
        self.addCleanup(logger.removeHandler, handler)

    @property
    def output(self):
        # oslo.log puts "[instance: <uuid>] " in the record's "instance".
        return ''.join(
            '%s %s%s\n' % (r.levelname, getattr(r, 'instance', ''),
                           r.getMessage())
            for r in self.records)


class DriverTestCase(test.NoDBTestCase):
    """A LibvirtVdpaDriver loaded the way nova-compute loads it."""

    #: VFs whose management device exists in the fake kernel
    vdpa_vfs = VFS[:2]

    def setUp(self):
        super().setUp()
        self.useFixture(nova_fixtures.LibvirtFixture())
        self.kernels = self.useFixture(kernels.FakeHostKernels(
            default=lambda: [fake_kernel.mlx5_vf(a) for a in self.vdpa_vfs]))
        self.host = self.useFixture(OffloadHost())
        # An empty list allows none: the VFs an operator would list, and
        # the simulator some tests add.
        vdpa_conf.register_opts(vdpa_driver.CONF)
        self.flags(management_devices=['pci/' + vf for vf in VFS]
                   + ['vdpasim_net'], group=vdpa_driver.option_group())
        self.conn = fakelibvirt.Connection(
            'qemu:///system', host_info=fakelibvirt.HostInfo(),
            pci_info=fakelibvirt.HostPCIDevicesInfo(
                num_pci=0, num_pfs=1, num_vfs=4))
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.host.Host.get_connection',
            return_value=self.conn))
        self.driver = virt_driver.load_compute_driver(
            fake_virt.FakeVirtAPI(), 'nova_vdpa.LibvirtVdpaDriver')
        self.kernel = self.kernels.kernel()
        self.instance = fake_instance.fake_instance_obj(
            None, uuid=uuids.instance, vcpus=2, memory_mb=512,
            flavor=objects.Flavor(vcpus=2, memory_mb=512, root_gb=1,
                                  ephemeral_gb=0, swap=0, extra_specs={}))
        self.image_meta = objects.ImageMeta.from_dict({'properties': {}})

    def get_config(self, vif):
        return self.driver.vif_driver.get_config(
            self.instance, vif, self.image_meta, self.instance.flavor, 'kvm')

    def start_guest(self, *interfaces):
        xml = ("<domain type='kvm'><name>instance-0001</name><uuid>%s</uuid>"
               "<memory>524288</memory><vcpu>1</vcpu><os><type>hvm</type>"
               "</os><devices>%s</devices></domain>"
               % (uuids.instance, ''.join(i.to_xml() for i in interfaces)))
        return self.conn.createXML(xml, 0)


class TestLoading(DriverTestCase):

    def test_loaded_through_nova_loader(self):
        self.assertIsInstance(self.driver, vdpa_driver.LibvirtVdpaDriver)
        self.assertIsInstance(self.driver.vif_driver,
                              vdpa_vif.LibvirtVdpaVIFDriver)
        # registered at construction: the group is readable now
        group = vdpa_driver.CONF[vdpa_driver.option_group()]
        self.assertEqual(10.0, group.delete_timeout)

    def test_empty_management_devices_is_one_error_at_start(self):
        log = self.useFixture(LogRecords())
        self.flags(management_devices=[], group=vdpa_driver.option_group())
        self.driver = virt_driver.load_compute_driver(
            fake_virt.FakeVirtAPI(), 'nova_vdpa.LibvirtVdpaDriver')
        errors = [r for r in log.records if r.levelno == logging.ERROR]
        self.assertEqual(1, len(errors), log.output)
        self.assertIn('set [nova_vdpa] management_devices',
                      errors[0].getMessage())
        # Fail closed: no VF is typed vdpa, no device is made.
        devices = jsonutils.loads(self.driver._get_pci_passthrough_devices())
        self.assertNotIn('vdpa', {d['dev_type'] for d in devices})
        self.assertRaises(nova_exception.ComputeResourcesUnavailable,
                          self.get_config, make_vif())
        self.assertEqual({}, self.kernel.devices)

    def test_every_nova_internal_holds_on_this_nova(self):
        # Names, signatures and behaviour markers, on the Nova release the
        # env installed: one nova-vdpa records as tested.
        self.assertIn(overrides.nova_version(),
                      [r.tested for r in releases.SUPPORTED])
        overrides.check(self.driver)
        for entry in overrides.PRIVATE_NAMES:
            overrides.check_entry(entry, self.driver)

    def refused_at_start(self, *entries):
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.compute.overrides.PRIVATE_NAMES',
            overrides.PRIVATE_NAMES + entries))
        ex = self.assertRaises(
            overrides.NovaIncompatible, virt_driver.load_compute_driver,
            fake_virt.FakeVirtAPI(), 'nova_vdpa.LibvirtVdpaDriver')
        self.assertNotIn('\n', str(ex))
        self.assertIn(overrides.NOVA_RELEASE, str(ex))
        return str(ex)

    def test_missing_private_name_refuses_to_start(self):
        msg = self.refused_at_start(overrides.PrivateName(
            'nova.virt.libvirt.driver', 'LibvirtDriver',
            '_gone_in_a_later_nova', 'test'))
        self.assertIn('LibvirtDriver._gone_in_a_later_nova is missing', msg)

    def test_changed_signature_refuses_to_start(self):
        # As if Nova swapped two parameters of a method we override.
        msg = self.refused_at_start(overrides.PrivateName(
            'nova.virt.libvirt.driver', 'LibvirtDriver',
            '_detach_direct_passthrough_vifs', 'test',
            signature='(self, context, instance, migrate_data)'))
        self.assertIn(
            'nova-vdpa cannot run on this Nova: nova.virt.libvirt.driver.'
            'LibvirtDriver._detach_direct_passthrough_vifs takes (self, '
            'context, migrate_data, instance), not (self, context, '
            'instance, migrate_data)', msg)

    def test_changed_behaviour_refuses_to_start(self):
        msg = self.refused_at_start(overrides.PrivateName(
            'nova.virt.libvirt.guest', 'Guest', 'get_interfaces', 'test',
            markers=("findall('./devices/interface')",)))
        self.assertIn("Guest.get_interfaces has \"findall('./devices/"
                      "interface')\" 0 times, not once", msg)

    def test_unsupported_release_refuses_to_start(self):
        self.useFixture(fixtures.MockPatch(
            'nova_vdpa.compute.overrides.nova_version',
            return_value='35.0.0'))
        ex = self.assertRaises(
            overrides.NovaIncompatible, virt_driver.load_compute_driver,
            fake_virt.FakeVirtAPI(), 'nova_vdpa.LibvirtVdpaDriver')
        self.assertEqual(
            'nova-vdpa cannot run on this Nova: Nova 35.0.0 is not a '
            'supported release (supported: 31.3.x, 32.2.x, 33.0.x, 34.0.x) '
            '(nova-vdpa was checked against Nova 31.3.1, 32.2.1, 33.0.2, '
            '34.0.0)', str(ex))

    def test_shim_elsewhere_refuses_to_start(self):
        found = install.layout()
        self.useFixture(fixtures.MockPatch(
            'nova_vdpa.compute.install.layout',
            return_value=install.Layout(
                found.nova_virt, '/elsewhere/nova/virt/nova_vdpa/'
                '__init__.py', found.package)))
        ex = self.assertRaises(
            install.UnsupportedInstall, virt_driver.load_compute_driver,
            fake_virt.FakeVirtAPI(), 'nova_vdpa.LibvirtVdpaDriver')
        self.assertIn('nova.virt.nova_vdpa resolves to /elsewhere/nova/'
                      'virt/nova_vdpa/__init__.py, not to %s/nova_vdpa/'
                      '__init__.py' % found.nova_virt, str(ex))


class TestInventory(DriverTestCase):

    def dev_types(self):
        devices = jsonutils.loads(self.driver._get_pci_passthrough_devices())
        return {d['address']: d['dev_type'] for d in devices}

    def test_vfs_with_a_management_device_are_vdpa(self):
        self.assertEqual({PF: 'type-PF', VFS[0]: 'vdpa', VFS[1]: 'vdpa',
                          VFS[2]: 'type-VF', VFS[3]: 'type-VF'},
                         self.dev_types())

    def test_management_device_appearing_later_is_seen_without_restart(self):
        self.dev_types()
        self.kernel.mgmtdevs.append(fake_kernel.mlx5_vf(VFS[3]))
        self.assertEqual('vdpa', self.dev_types()[VFS[3]])
        self.kernel.mgmtdevs.pop()
        self.assertEqual('type-VF', self.dev_types()[VFS[3]])

    def test_allowed_management_devices_limit_the_vdpa_vfs(self):
        self.flags(management_devices=['pci/' + VFS[1]],
                   group=vdpa_driver.option_group())
        self.driver = virt_driver.load_compute_driver(
            fake_virt.FakeVirtAPI(), 'nova_vdpa.LibvirtVdpaDriver')
        types = self.dev_types()
        self.assertEqual('type-VF', types[VFS[0]])
        self.assertEqual('vdpa', types[VFS[1]])


class TestVif(DriverTestCase):

    def test_device_created_before_the_xml_names_it(self):
        conf = self.get_config(make_vif())
        name = vdpa_allocator.device_name(uuids.port)
        dev = self.kernel.devices[name]
        self.assertEqual(MAC, dev.mac)
        self.assertEqual(1400, dev.mtu)
        self.assertEqual('pci/' + VFS[0], dev.mgmtdev.handle)
        self.assertEqual('vhost_vdpa', dev.driver)
        xml = etree.fromstring(conf.to_xml())
        self.assertEqual('vdpa', xml.get('type'))
        self.assertEqual(self.kernel.node(dev),
                         xml.find('source').get('dev'))
        self.assertEqual(MAC, xml.find('mac').get('address'))
        # the designer's interface, not upstream's two elements
        self.assertEqual('virtio', xml.find('model').get('type'))

    def test_allocation_is_idempotent(self):
        first = self.get_config(make_vif())
        second = self.get_config(make_vif())
        self.assertEqual(first.to_xml(), second.to_xml())
        self.assertEqual([vdpa_allocator.device_name(uuids.port)],
                         list(self.kernel.devices))

    def test_running_guest_interface_found_for_detach(self):
        conf = self.get_config(make_vif())
        self.start_guest(conf)
        guest = self.driver._host.get_guest(self.instance)
        # what detach_interface does to find the live interface
        self.assertIsNotNone(guest.get_interface_by_cfg(conf))

    def test_unplug_releases_the_device(self):
        self.get_config(make_vif())
        self.driver.vif_driver.unplug(self.instance, make_vif())
        self.assertEqual({}, self.kernel.devices)
        # and again: idempotent
        self.driver.vif_driver.unplug(self.instance, make_vif())

    def test_unplug_releases_even_when_os_vif_fails(self):
        # Nova's cleanup swallows this error; the device must not stay
        self.get_config(make_vif())
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.vif.LibvirtGenericVIFDriver._unplug_os_vif',
            side_effect=nova_exception.InternalError(
                'Failure running os_vif plugin unplug method')))
        self.assertRaises(nova_exception.InternalError,
                          self.driver.vif_driver.unplug, self.instance,
                          make_vif())
        self.assertEqual({}, self.kernel.devices)

    def test_running_guest_device_used_as_it_is(self):
        # the port's MTU changed; the guest (QEMU) holds its device
        conf = self.get_config(make_vif())
        self.start_guest(conf)
        name = vdpa_allocator.device_name(uuids.port)
        self.kernel.open_chardev(name)
        self.addCleanup(self.kernel.close_chardev, name)
        again = self.get_config(make_vif(mtu=1450))
        self.assertEqual(conf.source_dev, again.source_dev)
        self.assertEqual(1400, self.kernel.devices[name].mtu)
        guest = self.driver._host.get_guest(self.instance)
        self.assertIsNotNone(guest.get_interface_by_cfg(again))

    def test_stale_device_no_guest_names_is_made_again(self):
        self.get_config(make_vif())
        self.get_config(make_vif(mtu=1450))
        name = vdpa_allocator.device_name(uuids.port)
        self.assertEqual(1450, self.kernel.devices[name].mtu)

    def test_device_another_guest_holds_is_refused(self):
        conf = self.get_config(make_vif())
        self.start_guest(conf)
        other = fake_instance.fake_instance_obj(
            None, uuid=uuids.other_instance, vcpus=2, memory_mb=512,
            flavor=self.instance.flavor)
        ex = self.assertRaises(
            nova_exception.ComputeResourcesUnavailable,
            self.driver.vif_driver.get_config, other, make_vif(),
            self.image_meta, other.flavor, 'kvm')
        self.assertIn('in use by another server', ex.format_message())
        self.assertIn('instance-0001', self.stdlog.logger.output)
        name = vdpa_allocator.device_name(uuids.port)
        self.assertEqual(conf.source_dev,
                         self.kernel.node(self.kernel.devices[name]))

    def test_unplug_while_kept_keeps_the_device(self):
        # suspend and live migration detach for a while: the port stays
        self.get_config(make_vif())
        name = vdpa_allocator.device_name(uuids.port)
        with self.driver.vif_driver.keeping_devices(self.instance.uuid):
            self.driver.vif_driver.unplug(self.instance, make_vif())
            self.assertIn(name, self.kernel.devices)
        # afterwards (the port left) the unplug releases it
        self.driver.vif_driver.unplug(self.instance, make_vif())
        self.assertEqual({}, self.kernel.devices)

    def test_keeping_devices_is_per_instance(self):
        self.get_config(make_vif())
        with self.driver.vif_driver.keeping_devices(uuids.other_instance):
            self.driver.vif_driver.unplug(self.instance, make_vif())
        self.assertEqual({}, self.kernel.devices)

    def test_suspend_and_live_migration_detaches_keep_the_devices(self):
        seen = []

        def detach_interface(context, instance, vif):
            self.driver.vif_driver.unplug(instance, vif)
            seen.append(dict(self.kernel.devices))

        self.get_config(make_vif())
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.detach_interface',
            side_effect=detach_interface))
        self.instance.info_cache = objects.InstanceInfoCache(
            network_info=network_model.NetworkInfo([make_vif()]))
        self.instance.system_metadata = {}
        self.instance.pci_devices = objects.PciDeviceList(objects=[])
        self.driver._detach_direct_passthrough_ports(
            None, self.instance, mock.Mock())
        migrate_data = objects.LibvirtLiveMigrateData(vifs=[
            objects.VIFMigrateData(port_id=uuids.port, source_vif=make_vif(),
                                   vnic_type='vdpa', vif_type='ovs',
                                   profile={}, host='dest')])
        self.driver._detach_direct_passthrough_vifs(
            None, migrate_data, self.instance)
        name = vdpa_allocator.device_name(uuids.port)
        self.assertEqual(2, len(seen))
        for devices in seen:
            self.assertIn(name, devices)
        self.assertIn(name, self.kernel.devices)

    def test_held_device_is_kept_and_the_holder_named(self):
        conf = self.get_config(make_vif())
        self.start_guest(conf)
        name = vdpa_allocator.device_name(uuids.port)
        self.kernel.open_chardev(name)
        self.addCleanup(self.kernel.close_chardev, name)
        self.driver.vif_driver.unplug(self.instance, make_vif())
        self.assertIn(name, self.kernel.devices)
        log = self.stdlog.logger.output
        self.assertIn('libvirt domain instance-0001 (instance %s)'
                      % uuids.instance, log)

    def test_operator_device_is_adopted_and_never_deleted(self):
        client = self.kernel.client()
        self.addCleanup(client.close)
        client.create_device('vdpa0', 'pci/' + VFS[1],
                             mac='fa:16:3e:00:00:01')
        self.kernel.sysfs().bind('vdpa0')
        conf = self.get_config(make_vif(vf=VFS[1]))
        self.assertEqual(self.kernel.node(self.kernel.devices['vdpa0']),
                         conf.source_dev)
        self.driver.vif_driver.unplug(self.instance, make_vif(vf=VFS[1]))
        self.assertEqual(['vdpa0'], list(self.kernel.devices))

    def test_vf_without_vdpa_reschedules(self):
        ex = self.assertRaises(nova_exception.ComputeResourcesUnavailable,
                               self.get_config, make_vif(vf=VFS[3]))
        self.assertIn(uuids.port, ex.format_message())
        self.assertNotIn(VFS[3], ex.format_message())
        self.assertEqual({}, self.kernel.devices)

    def test_privsep_daemon_killed_in_the_creation_reschedules(self):
        # The daemon created and bound the device, then died before its
        # reply: the allocator deletes the device through a new daemon.
        real = privsep_channel.call
        calls = []

        def call(ctx, entrypoint, *args, **kwargs):
            result = real(ctx, entrypoint, *args, **kwargs)
            calls.append(entrypoint.__name__)
            if len(calls) == 1:
                raise exception.VdpaPrivsepDied(
                    device=args[0], mgmtdev='-', attribute='create',
                    reason='killed by the test')
            return result
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.channel.call', call))
        ex = self.assertRaises(nova_exception.ComputeResourcesUnavailable,
                               self.get_config, make_vif())
        self.assertIn(uuids.port, ex.format_message())
        self.assertEqual({}, self.kernel.devices)
        self.assertEqual(['_create_bound_device', '_delete_device'], calls)

    def test_non_vdpa_vif_goes_to_nova(self):
        vif = make_vif()
        vif['vnic_type'] = network_model.VNIC_TYPE_NORMAL
        vif['profile'] = {}
        conf = self.get_config(vif)
        self.assertNotEqual('vdpa', conf.net_type)
        self.assertEqual({}, self.kernel.devices)


class TestOrphanSweep(DriverTestCase):
    """The sweep's failures never reach Nova's resource update."""

    def test_kernel_that_does_not_answer_skips_the_sweep(self):
        self.useFixture(fixtures.MockPatchObject(
            self.driver.vdpa_allocator, 'owned_devices',
            side_effect=exception.VdpaKernelTimeout(
                device='*', mgmtdev='-', attribute='device dump',
                timeout=10)))
        self.driver.retry_releases()
        self.assertIn('vDPA orphan sweep skipped: the devices could not be '
                      'listed', self.stdlog.logger.output)

    def test_unreadable_instances_release_nothing(self):
        self.get_config(make_vif())
        name = vdpa_allocator.device_name(uuids.port)
        self.useFixture(fixtures.MockPatch(
            'nova.objects.InstanceList.get_by_host',
            side_effect=nova_exception.HypervisorUnavailable()))
        for _ in range(3):
            self.driver.retry_releases()
        self.assertIn(name, self.kernel.devices)
        self.assertIn('the instances of this host could not be read',
                      self.stdlog.logger.output)


class TestOffloadChecks(DriverTestCase):
    """[nova_vdpa] offload_checks wired into the driver."""

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(LogRecords())

    def test_option_on_by_default(self):
        self.assertTrue(self.driver.vif_driver.offload_checks)

    def assertRescheduled(self, vif, reason):
        ex = self.assertRaises(nova_exception.ComputeResourcesUnavailable,
                               self.get_config, vif)
        message = ex.format_message()
        self.assertIn(vif['id'], message)
        self.assertIn('not ready for offload', message)
        self.assertNotIn(vif['profile']['pci_slot'], message)
        self.assertNotIn('/', message)
        # The operator's reason, in full, in the log with the instance.
        self.assertIn(reason, self.log.output)
        self.assertIn(uuids.instance, self.log.output)
        self.assertEqual({}, self.kernel.devices)

    def test_pf_in_legacy_mode_fails_the_build_before_allocation(self):
        self.host.devlink.modes['pci/' + PF] = devlink.ESWITCH_MODE_LEGACY
        self.assertRescheduled(make_vif(), 'eswitch mode legacy')

    def test_vf_without_representor_fails_the_build_before_allocation(self):
        self.kernel.mgmtdevs.append(fake_kernel.mlx5_vf(VFS[2]))
        self.assertRescheduled(make_vif(vf=VFS[2]),
                               'VF %s (VF 2 of pci/%s) has no representor'
                               % (VFS[2], PF))

    def test_ready_vf_allocates(self):
        conf = self.get_config(make_vif())
        dev = self.kernel.devices[vdpa_allocator.device_name(uuids.port)]
        self.assertEqual('pci/' + VFS[0], dev.mgmtdev.handle)
        self.assertEqual(self.kernel.node(dev), conf.source_dev)
        self.assertNotIn('offload', self.log.output)

    def test_option_off_skips_the_checks(self):
        self.flags(offload_checks=False, group=vdpa_driver.option_group())
        self.driver = virt_driver.load_compute_driver(
            fake_virt.FakeVirtAPI(), 'nova_vdpa.LibvirtVdpaDriver')
        self.host.devlink.modes['pci/' + PF] = devlink.ESWITCH_MODE_LEGACY
        self.get_config(make_vif())
        self.assertEqual(1, len(self.kernel.devices))

    def test_simulated_vf_is_not_checked(self):
        # A made-up VF on vdpasim_net: no PCI device, no representor.
        sim_vf = '0000:00:05.1'
        self.kernel.mgmtdevs.append(fake_kernel.vdpasim_net())
        self.flags(simulated_vfs=[sim_vf + '=vdpasim_net'],
                   management_devices=['vdpasim_net'],
                   group=vdpa_driver.option_group())
        self.driver = virt_driver.load_compute_driver(
            fake_virt.FakeVirtAPI(), 'nova_vdpa.LibvirtVdpaDriver')
        self.get_config(make_vif(vf=sim_vf))
        self.assertEqual(1, len(self.kernel.devices))
        self.assertNotIn('offload', self.log.output)

    def _simulated(self):
        sim_vf = '0000:00:05.1'
        self.kernel.mgmtdevs.append(fake_kernel.vdpasim_net())
        self.flags(simulated_vfs=[sim_vf + '=vdpasim_net'],
                   group=vdpa_driver.option_group())
        self.driver = virt_driver.load_compute_driver(
            fake_virt.FakeVirtAPI(), 'nova_vdpa.LibvirtVdpaDriver')
        return sim_vf

    def test_virtual_address_device_needs_shared_memory(self):
        # vdpa_sim with use_va=1 (its default), like every VDUSE device.
        sim_vf = self._simulated()
        self.kernel.set_use_va(True)
        vif = make_vif(vf=sim_vf)
        ex = self.assertRaises(nova_exception.ComputeResourcesUnavailable,
                               self.get_config, vif)
        message = ex.format_message()
        self.assertIn('needs shared guest memory', message)
        self.assertIn(vif['id'], message)
        self.assertNotIn('vdpasim_net', message)
        # The operator reads the flavor setting that fixes it.
        self.assertIn('hw:mem_page_size', self.log.output)
        self.assertIn('file_backed_memory', self.log.output)
        self.assertIn(uuids.instance, self.log.output)
        # Refused before the allocation: nothing was created.
        self.assertEqual({}, self.kernel.devices)
        # A flavor with huge pages (shared memory in Nova's XML) is served.
        self.instance.flavor.extra_specs = {'hw:mem_page_size': 'large'}
        self.get_config(vif)
        self.assertEqual(1, len(self.kernel.devices))

    def test_file_backed_memory_serves_a_virtual_address_device(self):
        sim_vf = self._simulated()
        self.kernel.set_use_va(True)
        self.flags(file_backed_memory=1024, group='libvirt')
        self.get_config(make_vif(vf=sim_vf))
        self.assertEqual(1, len(self.kernel.devices))

    def test_physical_address_device_needs_nothing(self):
        sim_vf = self._simulated()
        self.get_config(make_vif(vf=sim_vf))
        self.assertEqual(1, len(self.kernel.devices))

    # ------------------------------------------------------- init_host
    def init_host(self):
        # Before Nova 34, init_host reads the host's instances from the
        # database itself (_register_all_undefined_instance_details), and
        # this test case has no database; that work is Nova's, not ours.
        self.useFixture(fixtures.MockPatchObject(
            self.driver, '_register_all_undefined_instance_details'))
        self.driver.init_host('compute-0')

    def test_init_host_logs_one_line_on_a_good_host(self):
        self.init_host()
        self.assertIn('vdpa offload checks passed', self.log.output)

    def test_init_host_logs_each_problem(self):
        self.host.ovsdb.config = {}
        self.host.devlink.modes['pci/' + PF] = devlink.ESWITCH_MODE_LEGACY
        self.init_host()
        self.assertIn('other_config:hw-offload is unset', self.log.output)
        self.assertIn('is in eswitch mode legacy', self.log.output)

    def test_init_host_without_ovsdb_logs_and_goes_on(self):
        # A socket file nobody listens on (ovsdb-server stopped): the
        # connection is refused at once.
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'db.sock')
        sock = socket.socket(socket.AF_UNIX)
        self.addCleanup(sock.close)
        sock.bind(path)
        self.host.ovsdb = None
        self.flags(ovsdb_connection='unix:' + path, group='os_vif_ovs')
        self.host.devlink.modes['pci/' + PF] = devlink.ESWITCH_MODE_LEGACY
        self.init_host()
        ovsdb_lines = [line for line in self.log.output.splitlines()
                       if 'Open vSwitch database' in line]
        self.assertEqual(1, len(ovsdb_lines), self.log.output)
        self.assertIn(path, ovsdb_lines[0])
        self.assertIn('ovsdb_connection', ovsdb_lines[0])
        # The VF checks still ran.
        self.assertIn('is in eswitch mode legacy', self.log.output)

    def test_plug_without_ovsdb_warns_once(self):
        self.host.ovsdb = None
        self.flags(ovsdb_connection='unix:/nonexistent/db.sock',
                   group='os_vif_ovs')
        self.driver.vif_driver.plug(self.instance, make_vif())
        self.driver.vif_driver.plug(self.instance, make_vif())
        self.assertEqual(1, self.log.output.count(
            'vdpa ports cannot be verified after plug'), self.log.output)
        self.assertIn('/nonexistent/db.sock', self.log.output)

    # ----------------------------------------------------------- plug
    def test_plug_verifies_the_representor_row(self):
        vif = make_vif()
        self.host.ovsdb.plug(REPS[0], iface_id=uuids.port, mac=MAC)
        self.driver.vif_driver.plug(self.instance, vif)
        self.assertNotIn(REPS[0], self.log.output)
        self.assertNotIn('verif', self.log.output)

    def test_plug_warns_on_a_bad_row(self):
        vif = make_vif()
        self.host.ovsdb.plug(REPS[0], iface_id=uuids.port, mac=MAC,
                             ofport=-1, error='could not open network '
                             'device %s (No such device)' % REPS[0])
        self.driver.vif_driver.plug(self.instance, vif)
        self.assertIn('WARNING', self.log.output)
        self.assertIn('Interface %s: ofport is -1' % REPS[0],
                      self.log.output)
        self.assertIn('No such device', self.log.output)
        self.assertIn(uuids.instance, self.log.output)

    def test_plug_without_a_row_warns(self):
        self.driver.vif_driver.plug(self.instance, make_vif())
        self.assertIn('representor %s has no Interface row' % REPS[0],
                      self.log.output)

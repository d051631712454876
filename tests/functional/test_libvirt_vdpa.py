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

"""vdpa guest interfaces against the bed's real libvirt and QEMU.

Every interface the designer can produce is checked against libvirt's
schema, defined and started (paused, TCG) on a real vdpa_sim_net device
bound to vhost_vdpa, found on QEMU's command line on the right chardev, and
read back from libvirt. Hotplug and unplug run on a second, running guest,
and the elements libvirt refuses for vdpa are shown refused and shown
avoided (define only, no start).

One domain carries all variants (one interface per variant, each on its
own device), so the file starts QEMU twice in all: a start costs seconds
under TCG.
Devices are made and released through nova-vdpa's kernel boundary
(``nova_vdpa.kernel.lifecycle``).
"""

import errno
import json
import logging
import os
import subprocess
import tempfile
import time
import uuid

import fixtures
from lxml import etree
from nova import objects
from nova.virt.libvirt import config as vconfig

from nova_vdpa import exception
from nova_vdpa.kernel import lifecycle
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs
from nova_vdpa.libvirt import config
from nova_vdpa.libvirt import designer
from tests.functional import base

DOMAIN = 'nova-vdpa-lvt'
MQ = {'hw:vif_multiqueue_enabled': 'true'}
PACKED = {'hw:virtio_packed_ring': 'true'}
# The oldest host that can run vdpa interfaces at all.
OLDEST = designer.Host(libvirt_version=designer.MIN_LIBVIRT_VDPA,
                       qemu_version=designer.MIN_QEMU_VDPA)


KERNEL = netlink.VdpaClient()
SYSFS = sysfs.VdpaSysfs()
objects.register_all()  # the designer takes Nova's Flavor and ImageMeta


def render(port, device, host, vcpus=2, extra_specs=None, image_props=None,
           **kwargs):
    """The designer, given a flavor and image built from plain values."""
    return designer.get_vdpa_interface_config(
        port, device, host,
        flavor=objects.Flavor(name='m1.lvt', vcpus=vcpus,
                              extra_specs=extra_specs or {}),
        image_meta={'properties': image_props or {}}, **kwargs)


def create_vhost_vdpa(name: str, mac: str) -> str:
    """Create a vdpa_sim_net device bound to vhost_vdpa; return its chardev.

    The bed loads virtio_vdpa first: nova-vdpa's binding moves it.
    """
    return lifecycle.create_device(KERNEL, SYSFS, name, 'vdpasim_net',
                                   mac=mac)


def device_facts(name: str, chardev: str) -> designer.Device:
    """The designer's view of a device, read back from the kernel."""
    dev = KERNEL.get_device(name)
    cfg = KERNEL.get_config(name)
    # max_vqs counts an rx and a tx queue per pair, plus the control queue.
    return designer.Device(chardev=chardev,
                           max_queue_pairs=max(1, (dev.max_vqs or 0) // 2),
                           max_vq_size=dev.max_vq_size,
                           features=cfg.device_features, mtu=cfg.mtu)


def held_by(pid: int) -> set[str]:
    """The vhost-vdpa chardevs process ``pid`` has open."""
    held = set()
    for fd in os.listdir('/proc/%d/fd' % pid):
        try:
            target = os.readlink('/proc/%d/fd/%s' % (pid, fd))
        except FileNotFoundError:
            continue
        if target.startswith('/dev/vhost-vdpa-'):
            held.add(target)
    return held


def opens_exclusively(chardev: str) -> bool:
    """True if nobody holds ``chardev`` (vhost-vdpa allows one opener)."""
    try:
        os.close(os.open(chardev, os.O_RDWR))
    except OSError as e:
        if e.errno == errno.EBUSY:
            return False
        raise
    return True


def guest_config(name: str, interfaces, spare_ports: int = 0
                 ) -> vconfig.LibvirtConfigGuest:
    """A tiny TCG q35 guest, composed with Nova's own config classes.

    Spare PCIe root ports take hotplugged devices; a paused guest never
    powers their slots on, so QEMU completes the unplug of a hotplugged
    device without asking the guest (the slot of a device present at
    start is powered on: its unplug waits for a guest OS, which these
    guests do not have).
    libvirt fills the first ports with the guest's own devices (the
    interfaces, USB, balloon).
    """
    guest = vconfig.LibvirtConfigGuest()
    guest.virt_type = 'qemu'
    guest.name = name
    guest.uuid = str(uuid.uuid4())
    guest.memory = 128 * 1024
    guest.vcpus = 2
    guest.os_type = 'hvm'
    guest.os_arch = 'x86_64'
    # From 6.1 on, q35 hotplugs on PCIe root ports through ACPI, which
    # only a guest OS completes; 6.0 still uses native PCIe hotplug.
    guest.os_mach_type = 'pc-q35-6.0'
    root = vconfig.LibvirtConfigGuestController()
    root.type, root.index, root.model = 'pci', 0, 'pcie-root'
    guest.add_device(root)
    for index in range(1, len(interfaces) + 3 + spare_ports):
        port = vconfig.LibvirtConfigGuestPCIeRootPortController()
        port.index = index
        guest.add_device(port)
    for interface in interfaces:
        guest.add_device(interface)
    return guest


def virt_xml_validate(xml: str) -> subprocess.CompletedProcess:
    with tempfile.NamedTemporaryFile('w', suffix='.xml') as f:
        f.write(xml)
        f.flush()
        return subprocess.run(['virt-xml-validate', f.name, 'domain'],
                              capture_output=True, text=True, timeout=120)


def reported_interfaces(dom) -> dict:
    """The vdpa interfaces libvirt reports for ``dom``, by MAC."""
    root = etree.fromstring(dom.XMLDesc(0))
    found = {}
    for node in root.findall("./devices/interface[@type='vdpa']"):
        conf = config.LibvirtConfigGuestVdpaInterface()
        conf.parse_dom(node)
        found[conf.mac_addr] = conf
    return found


def without_placement(conf) -> dict:
    """Values of ``conf`` without those libvirt adds (alias, address)."""
    values = conf.values()
    values.update(alias=None, device_addr=None)
    return values


def qemu_netdevs(conn, dom) -> dict:
    """What QEMU really got, per guest MAC.

    For each MAC: its ``-netdev`` and ``-device`` arguments and the chardev
    behind the netdev's fdset.
    """
    import libvirt_qemu
    pid = int(open('/run/libvirt/qemu/%s.pid' % dom.name()).read())
    with open('/proc/%d/cmdline' % pid, 'rb') as f:
        argv = f.read().decode().split('\0')
    netdevs, devices = {}, []
    for opt, arg in zip(argv, argv[1:]):
        if opt == '-netdev' and arg.startswith('{'):
            netdev = json.loads(arg)
            netdevs[netdev['id']] = netdev
        elif opt == '-device' and arg.startswith('{'):
            devices.append(json.loads(arg))
    # libvirt passes the opened chardev with -add-fd; QEMU keeps a dup of
    # it in the fdset, which query-fdsets names.
    fdsets = json.loads(libvirt_qemu.qemuMonitorCommand(
        dom, '{"execute": "query-fdsets"}', 0))['return']
    chardev_of = {}
    for fdset in fdsets:
        for fd in fdset['fds']:
            chardev_of['/dev/fdset/%d' % fdset['fdset-id']] = os.readlink(
                '/proc/%d/fd/%d' % (pid, fd['fd']))
    found = {}
    for device in devices:
        netdev = netdevs.get(device.get('netdev'))
        if netdev is not None:
            found[device['mac']] = {
                'netdev': netdev, 'device': device,
                'chardev': chardev_of.get(netdev.get('vhostdev'))}
    return found


class LibvirtVdpaBase(base.BedTestCase):
    services = ('libvirt',)

    #: name -> MAC of the devices the class needs
    DEVICES: dict[str, str] = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.chardevs, cls.facts = {}, {}
        if not base.in_testbed():
            return  # setUp fails the tests with the reason
        import libvirt
        # libvirt-python prints every error to stderr unless a handler is
        # registered (nova's Host registers one too); the tests check the
        # exceptions, and a passing run prints none of them.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        cls.libvirt = libvirt
        cls.conn = libvirt.open('qemu:///system')
        cls.host = designer.Host(libvirt_version=cls.conn.getLibVersion(),
                                 qemu_version=cls.conn.getVersion())
        # The designer's warnings are part of what is tested: kept, not
        # printed.
        logs = fixtures.FakeLogger(level=logging.WARNING, name='nova_vdpa')
        logs.setUp()
        try:
            for name, mac in cls.DEVICES.items():
                cls.chardevs[name] = create_vhost_vdpa(name, mac)
                cls.facts[name] = device_facts(name, cls.chardevs[name])
            cls.prepare()
        except Exception:
            cls.tearDownClass()
            raise
        finally:
            cls.prepare_log = logs.output
            logs.cleanUp()

    def setUp(self):
        super().setUp()
        self.logs = self.useFixture(fixtures.FakeLogger(
            level=logging.WARNING, name='nova_vdpa'))

    @classmethod
    def prepare(cls):
        """Class-wide setup after the devices exist."""

    @classmethod
    def tearDownClass(cls):
        conn = getattr(cls, 'conn', None)
        if conn is not None:
            for dom in conn.listAllDomains():
                if dom.name().startswith(DOMAIN):
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
            conn.close()
            cls.conn = None
        for name in cls.chardevs:
            # Deletion is refused while QEMU holds a device: domains first.
            lifecycle.delete_device(SYSFS, name, timeout=10)
        super().tearDownClass()

    def design(self, name, port_mac, host=None, device=None, vcpus=2,
               **kwargs):
        return render(designer.Port(mac=port_mac, mtu=1500),
                      device or self.facts[name], host or self.host,
                      vcpus=vcpus, **kwargs)


class TestVariants(LibvirtVdpaBase):
    """Every designer variant: schema, start, QEMU command line, read-back."""

    DEVICES = {'lvt%d' % i: '02:00:00:00:01:%02x' % i for i in range(7)}

    @classmethod
    def variants(cls):
        """(label, device name, config): what the designer can produce.

        vdpa_sim_net has one queue pair and 256-entry rings, so the
        multiqueue and large-ring variants are produced from the facts of
        a device that has more (a multiqueue NIC); libvirt and QEMU get
        them on the simulator, which they accept (see TestRejections for
        what that means).
        """
        mq_nic = dict(max_queue_pairs=8, max_vq_size=1024, mtu=1500)
        d = dict(cls.facts)
        mac = '02:00:00:00:01:%02x'

        def design(label, i, host=None, device=None, **kwargs):
            name = 'lvt%d' % i
            device = device or d[name]
            return label, name, render(
                designer.Port(mac=mac % i, mtu=1500), device,
                host or cls.host, vcpus=2, **kwargs)

        def nic(i):
            return designer.Device(chardev=cls.chardevs['lvt%d' % i],
                                   **mq_nic)

        variants = [
            design('oldest host', 0, host=OLDEST),
            design('this host', 1),
            design('multiqueue', 2, device=nic(2), extra_specs=MQ),
            design('queue sizes', 3, device=nic(3), rx_queue_size=1024,
                   tx_queue_size=512),
            design('queue sizes capped by the device', 4,
                   rx_queue_size=1024, tx_queue_size=1024),
            # vdpa_sim_net lacks VIRTIO_F_RING_PACKED (the designer would
            # leave packed out): facts of a device that offers it.
            design('packed ring', 5, device=nic(5), image_props={
                'hw_virtio_packed_ring': True}),
            design('everything', 6, device=nic(6), extra_specs=MQ,
                   image_props={'hw_virtio_packed_ring': 'true'},
                   rx_queue_size=512, tx_queue_size=512),
        ]
        return variants

    @classmethod
    def prepare(cls):
        cls.rendered = cls.variants()
        guest = guest_config(DOMAIN, [c for _, _, c in cls.rendered])
        cls.domain_xml = guest.to_xml()
        cls.dom = cls.conn.defineXML(cls.domain_xml)
        cls.dom.createWithFlags(cls.libvirt.VIR_DOMAIN_START_PAUSED)

    def test_designer_warned_only_for_the_capped_rings(self):
        lines = self.prepare_log.splitlines()
        self.assertEqual(2, len(lines), lines)
        for option, line in zip(('rx_queue_size', 'tx_queue_size'), lines):
            self.assertIn('port with MAC 02:00:00:00:01:04', line)
            self.assertIn('%s = 1024 is larger than the largest ring'
                          % option, line)
            self.assertIn('rendering 256', line)

    def test_variants_are_distinct(self):
        xmls = {c.to_xml() for _, _, c in self.rendered}
        self.assertEqual(len(self.rendered), len(xmls))

    def test_every_variant_validates_against_libvirt_schema(self):
        for label, _, conf in self.rendered:
            guest = guest_config(DOMAIN + '-schema', [conf])
            proc = virt_xml_validate(guest.to_xml())
            self.assertEqual(0, proc.returncode, '%s: %s%s' % (
                label, proc.stdout, proc.stderr))
        proc = virt_xml_validate(self.domain_xml)
        self.assertEqual(0, proc.returncode, proc.stderr)

    def test_qemu_runs_vhost_vdpa_on_each_chardev(self):
        self.assertTrue(self.dom.isActive())
        qemu = qemu_netdevs(self.conn, self.dom)
        for label, name, conf in self.rendered:
            got = qemu[conf.mac_addr]
            self.assertEqual('vhost-vdpa', got['netdev']['type'], label)
            self.assertTrue(got['netdev']['vhostdev'].startswith(
                '/dev/fdset/'), label)
            self.assertEqual(self.chardevs[name], got['chardev'], label)
            self.assertEqual('virtio-net-pci', got['device']['driver'])
            # What we asked for reached virtio-net (absent: QEMU default).
            device = got['device']
            self.assertEqual(bool(conf.vhost_queues), device.get(
                'mq', False), label)
            self.assertEqual(conf.vhost_rx_queue_size,
                             device.get('rx_queue_size'), label)
            self.assertEqual(conf.vhost_tx_queue_size,
                             device.get('tx_queue_size'), label)
            self.assertEqual(bool(conf.driver_packed),
                             device.get('packed', False), label)
            self.assertEqual(bool(conf.driver_page_per_vq),
                             device.get('page-per-vq', False), label)
        # QEMU holds every chardev: nobody else can open one.
        for chardev in self.chardevs.values():
            self.assertFalse(opens_exclusively(chardev), chardev)

    def test_libvirt_reports_back_what_we_rendered(self):
        reported = reported_interfaces(self.dom)
        self.assertEqual(len(self.rendered), len(reported))
        for label, _, conf in self.rendered:
            self.assertEqual(without_placement(conf),
                             without_placement(reported[conf.mac_addr]),
                             label)
            # Nova's own match (how it finds the interface to detach).
            live = vconfig.LibvirtConfigGuestInterface()
            live.parse_dom(etree.fromstring(
                reported[conf.mac_addr].to_xml()))
            self.assertEqual(live, conf, label)


class TestPlacement(LibvirtVdpaBase):
    """The config's own fields libvirt keeps: boot order, alias, address."""

    DEVICES = {'lvt7': '02:00:00:00:01:07'}

    def test_boot_alias_address_round_trip_through_libvirt(self):
        conf = self.design('lvt7', '02:00:00:00:01:07')
        conf.boot_order = 1
        conf.alias = 'ua-port-lvt7'
        conf.device_addr = config.pci_address(0, 0, 0x0a, 0)
        guest = guest_config(DOMAIN + '-placement', [conf])
        proc = virt_xml_validate(guest.to_xml())
        self.assertEqual(0, proc.returncode, proc.stderr)
        dom = self.conn.defineXML(guest.to_xml())
        self.addCleanup(dom.undefine)
        self.assertEqual(conf, reported_interfaces(dom)[conf.mac_addr])


class TestRejections(LibvirtVdpaBase):
    """What libvirt/QEMU refuse or ignore for vdpa, and our avoidance."""

    DEVICES = {'lvt8': '02:00:00:00:01:08'}

    def define_error(self, conf):
        guest = guest_config(DOMAIN + '-rejected', [conf])
        e = self.assertRaises(self.libvirt.libvirtError,
                              self.conn.defineXML, guest.to_xml())
        return str(e)

    def define_ok(self, conf):
        """Define a guest with ``conf``; return what libvirt reports."""
        guest = guest_config(DOMAIN + '-accepted', [conf])
        dom = self.conn.defineXML(guest.to_xml())
        try:
            return reported_interfaces(dom)[conf.mac_addr]
        finally:
            dom.undefine()

    def test_mtu_rejected_by_libvirt_never_rendered(self):
        conf = self.design('lvt8', '02:00:00:00:01:08')
        conf.mtu = 1400
        # The schema allows it; the QEMU driver refuses it at define time.
        self.assertEqual(0, virt_xml_validate(
            guest_config(DOMAIN, [conf]).to_xml()).returncode)
        self.assertIn('setting MTU on interface type vdpa is not supported',
                      self.define_error(conf))

        for mtu in (1400, 1500, 9000):
            conf = render(
                designer.Port(mac='02:00:00:00:01:08', mtu=mtu),
                self.facts['lvt8'], self.host, vcpus=2)
            self.assertIsNone(conf.mtu)
            self.define_ok(conf)

    def test_non_virtio_model_rejected_designer_renders_virtio(self):
        conf = self.design('lvt8', '02:00:00:00:01:08')
        conf.model = 'e1000'
        # (with page_per_vq libvirt refuses the <driver> option first:
        # "page_per_vq option is only supported for virtio devices")
        conf.driver_page_per_vq = None
        self.assertIn("invalid model for interface of type 'vdpa'",
                      self.define_error(conf))
        conf = self.design('lvt8', '02:00:00:00:01:08',
                           image_props={'hw_vif_model': 'e1000'})
        self.assertEqual('virtio', conf.model)
        self.assertIn('the image asks for NIC model e1000',
                      self.logs.output)
        self.assertEqual(without_placement(conf),
                         without_placement(self.define_ok(conf)))

    def test_mac_unicast_and_stored_lowercase(self):
        conf = self.design('lvt8', '02:00:00:00:01:08')
        conf.mac_addr = '03:00:00:00:01:08'
        self.assertIn('multicast', self.define_error(conf))
        conf.mac_addr = '02:AB:00:00:01:08'
        guest = guest_config(DOMAIN + '-accepted', [conf])
        dom = self.conn.defineXML(guest.to_xml())
        self.addCleanup(dom.undefine)
        # libvirt keeps it lowercase: an uppercase config no longer equals
        # the live interface (Nova's detach match compares strings).
        self.assertEqual(['02:ab:00:00:01:08'],
                         list(reported_interfaces(dom)))
        live = vconfig.LibvirtConfigGuestInterface()
        live.parse_dom(etree.fromstring(
            reported_interfaces(dom)['02:ab:00:00:01:08'].to_xml()))
        self.assertNotEqual(live, conf)
        # The designer refuses the one and renders the other lowercase.
        self.assertRaises(exception.InvalidVdpaInterfaceRequest,
                          designer.Port, '03:00:00:00:01:08')
        ours = self.design('lvt8', '02:AB:00:00:01:08')
        self.assertEqual('02:ab:00:00:01:08', ours.mac_addr)
        self.assertEqual(live, ours)

    def test_queues_on_device_without_mq_accepted_but_void(self):
        # vdpa_sim_net has no VIRTIO_NET_F_MQ: one data queue pair.
        self.assertEqual(1, self.facts['lvt8'].max_queue_pairs)
        # libvirt accepts queues='2' on it (TestVariants starts QEMU with
        # mq=on on such a device); the guest could never use the second
        # pair. The designer, given the real device, renders no queues.
        conf = self.design('lvt8', '02:00:00:00:01:08', vcpus=8,
                           extra_specs=MQ)
        self.assertIsNone(conf.vhost_queues)
        conf.vhost_queues = 2
        self.assertEqual(2, self.define_ok(conf).vhost_queues)

    def test_queues_one_dropped_by_libvirt_never_rendered(self):
        conf = self.design('lvt8', '02:00:00:00:01:08')
        conf.vhost_queues = 1
        self.assertIsNone(self.define_ok(conf).vhost_queues)
        device = designer.Device(chardev=self.chardevs['lvt8'],
                                 max_queue_pairs=8)
        self.assertIsNone(self.design('lvt8', '02:00:00:00:01:08',
                                      device=device, vcpus=1,
                                      extra_specs=MQ).vhost_queues)


class TestHotplug(LibvirtVdpaBase):
    """Live attach and detach of designer interfaces.

    The guest runs (firmware only, no OS): QEMU 7.2 closes the fds of a
    removed fdset only while the VM runs, so in a paused guest a detached
    chardev stays open (busy).
    """

    DEVICES = {'lvt9': '02:00:00:00:01:09', 'lvt10': '02:00:00:00:01:0a',
               'lvt11': '02:00:00:00:01:0b'}
    # The interface present at start stays: its unplug would wait for a
    # guest OS (see guest_config).

    @classmethod
    def prepare(cls):
        cls.boot_conf = render(
            designer.Port(mac='02:00:00:00:01:09'), cls.facts['lvt9'],
            cls.host, vcpus=2)
        guest = guest_config(DOMAIN + '-hotplug', [cls.boot_conf],
                             spare_ports=2)
        cls.dom = cls.conn.defineXML(guest.to_xml())
        cls.dom.createWithFlags(cls.libvirt.VIR_DOMAIN_START_PAUSED)
        cls.dom.resume()
        cls.pid = int(open('/run/libvirt/qemu/%s.pid'
                           % cls.dom.name()).read())

    def fdsets(self):
        """QEMU's fdsets: opaque -> (fdset id, chardev)."""
        import libvirt_qemu
        reply = json.loads(libvirt_qemu.qemuMonitorCommand(
            self.dom, '{"execute": "query-fdsets"}', 0))['return']
        found = {}
        for fdset in reply:
            for fd in fdset['fds']:
                found[fd['opaque']] = (fdset['fdset-id'], os.readlink(
                    '/proc/%d/fd/%d' % (self.pid, fd['fd'])))
        return found

    def wait_released(self, chardev, timeout=30):
        deadline = time.monotonic() + timeout
        while chardev in held_by(self.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        return chardev not in held_by(self.pid)

    def test_attach_detach_attach_another(self):
        live = self.libvirt.VIR_DOMAIN_AFFECT_LIVE
        self.assertIn(self.chardevs['lvt9'], held_by(self.pid))
        # A new port on another device, then back on the first one: a
        # detached device is free for the next port.
        for name, mac in (('lvt10', '02:00:00:00:01:0a'),
                          ('lvt11', '02:00:00:00:01:0b'),
                          ('lvt10', '02:00:00:00:01:0c')):
            chardev = self.chardevs[name]
            conf = self.design(name, mac, rx_queue_size=256,
                               image_props={'hw_virtio_packed_ring': True})
            self.assertTrue(opens_exclusively(chardev))

            self.dom.attachDeviceFlags(conf.to_xml(), live)
            self.assertIn(chardev, held_by(self.pid))
            self.assertFalse(opens_exclusively(chardev))
            reported = reported_interfaces(self.dom)
            self.assertEqual(without_placement(conf),
                             without_placement(reported[mac]))

            alias = reported[mac].alias
            self.dom.detachDeviceFlags(conf.to_xml(), live)
            self.assertNotIn(mac, reported_interfaces(self.dom))
            self.assertNotIn(mac, qemu_netdevs(self.conn, self.dom))
            self.assertTrue(self.wait_released(chardev), chardev)
            self.assertNotIn(alias + '-vdpa', self.fdsets())
            self.assertTrue(opens_exclusively(chardev))

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

"""Live migration of a guest with a vdpa interface, between two libvirtds.

The bed's libvirtd is the source host. A second libvirtd, started here in
its own mount and UTS namespaces (tmpfs over libvirt's state, run, cache,
log and domain-config folders), with its own ``host_uuid`` and listening
on TCP 127.0.0.1 without auth, is the destination host. Both run on the
one bed kernel, so both "hosts" make their devices with nova-vdpa's
allocator on the same vdpa_sim_net management device: the source device
on one (simulated) VF, the destination device on another. Device names
are per port (``nvdpa-<port>``) and one kernel has one namespace, so the
destination's device belongs to a second port id; on two real hosts it
would be the same port's.

Where QEMU can migrate a vhost-vdpa netdev (QEMU 10, libvirt 11: Debian
13's userspace), the running guest moves to the destination device: the
interface is in the source's XML until the source is gone and in the
destination's from then on, the source device can be released once the
source QEMU has exited, and the downtime is printed. Where it cannot
(QEMU 7.2, libvirt 9.0: Debian 12), the migration is refused with QEMU's
blocker, the text :func:`nova_vdpa.libvirt.designer.migration_refused`
recognises, and the guest keeps running on the source.

The guests boot no OS (firmware only): the device's datapath never
starts, so this proves the control path only, not traffic.
"""

import os
import subprocess
import tempfile
import threading
import time
import uuid

from lxml import etree
from nova import objects
from nova.virt.libvirt import config as vconfig
from oslo_config import cfg
from testtools import content

from nova_vdpa import allocator
from nova_vdpa import conf as vdpa_conf
from nova_vdpa import exception
from nova_vdpa.libvirt import designer
from tests.functional import allocator_base

objects.register_all()  # the designer takes Nova's Flavor

DOMAIN = 'nova-vdpa-migrate'
SOURCE_VF = allocator_base.SIM_VF
DEST_VF = '0000:00:05.3'
SOURCE_PORT = '5b3c9f1e-2a4d-4e6f-8a1b-3c5d7e9f1a01'
DEST_PORT = '5b3c9f1e-2a4d-4e6f-8a1b-3c5d7e9f1a02'
MAC = 'fa:16:3e:7b:00:01'
DEST_PORT_TCP = 16519
DEST_HOST_UUID = 'a5a5a5a5-0000-4000-8000-00000000d057'
# What the destination's own namespace hides (its state, its domains).
# /var/cache/libvirt stays shared: it holds QEMU's capabilities, the same
# binary's for both daemons, so the destination skips a probe that takes
# a minute under TCG.
PRIVATE_DIRS = ('/run/libvirt', '/var/lib/libvirt', '/var/log/libvirt',
                '/etc/libvirt/qemu')


def guest_xml(interface) -> str:
    """A tiny running TCG guest (firmware only), Nova's config classes."""
    guest = vconfig.LibvirtConfigGuest()
    guest.virt_type = 'qemu'
    guest.name = DOMAIN
    guest.uuid = str(uuid.uuid4())
    guest.memory = 128 * 1024
    guest.vcpus = 1
    guest.os_type = 'hvm'
    guest.os_mach_type = 'q35'
    guest.add_device(interface)
    return guest.to_xml()


def vdpa_sources(xml: str) -> list[tuple[str, str]]:
    """(MAC, chardev) of each vdpa interface in a domain XML."""
    root = etree.fromstring(xml)
    return [(node.find('mac').get('address'),
             node.find('source').get('dev'))
            for node in root.findall("./devices/interface[@type='vdpa']")]


def with_chardev(xml: str, chardev: str) -> str:
    """``xml`` with its (one) vdpa interface on ``chardev``."""
    root = etree.fromstring(xml)
    [node] = root.findall("./devices/interface[@type='vdpa']")
    node.find('source').set('dev', chardev)
    return etree.tostring(root, encoding='unicode')


class DestinationDaemon:
    """A second libvirtd acting as another host, on TCP 127.0.0.1."""

    def __init__(self, logs: str) -> None:
        self.dir = tempfile.mkdtemp(prefix='nova-vdpa-dest-')
        self.conf = os.path.join(self.dir, 'libvirtd.conf')
        with open(self.conf, 'w') as f:
            f.write('listen_tls = 0\nlisten_tcp = 1\n'
                    'listen_addr = "127.0.0.1"\ntcp_port = "%d"\n'
                    'auth_tcp = "none"\nhost_uuid = "%s"\n'
                    'log_outputs = "3:file:%s/libvirtd-dest.log"\n'
                    % (DEST_PORT_TCP, DEST_HOST_UUID, logs))
        mounts = ' && '.join('mkdir -p %s && mount -t tmpfs tmpfs %s'
                             % (d, d) for d in PRIVATE_DIRS)
        script = ('hostname nova-vdpa-dest && %s && '
                  'exec libvirtd --listen -f %s' % (mounts, self.conf))
        with open(os.path.join(logs, 'libvirtd-dest.out'), 'ab') as out:
            self.proc = subprocess.Popen(
                ['unshare', '--mount', '--uts', '--propagation', 'private',
                 'sh', '-c', script], stdout=out, stderr=subprocess.STDOUT)
        self.uri = 'qemu+tcp://127.0.0.1:%d/system' % DEST_PORT_TCP

    def connect(self, libvirt, timeout: float = 180):
        """Connect once it answers (its QEMU probe takes a while)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError('the destination libvirtd exited with %d'
                                   % self.proc.returncode)
            try:
                return libvirt.open(self.uri)
            except libvirt.libvirtError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def qemu_pid(name: str) -> int:
    with open('/run/libvirt/qemu/%s.pid' % name) as f:
        return int(f.read())


def holds(pid: int, chardev: str) -> bool:
    try:
        fds = os.listdir('/proc/%d/fd' % pid)
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink('/proc/%d/fd/%s' % (pid, fd)) == chardev:
                return True
        except FileNotFoundError:
            pass
    return False


class MigrationBedTestCase(allocator_base.AllocatorBedTestCase):
    """Two libvirtds (the bed's and :class:`DestinationDaemon`) and two VFs.

    ``conn`` and ``dconn`` are their connections, ``host`` the source's
    versions.
    """

    services = ('libvirt',)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not allocator_base.base.in_testbed():
            return
        # The base's file plus a VF for the destination host. The privsep
        # daemon starts at the first call and reads this file.
        path = os.path.join(cls.tmp.name, 'nova-vdpa.conf')
        group = vdpa_conf.list_opts()[0][0].name
        with open(path, 'w') as f:
            f.write('[%s]\nmanagement_devices = vdpasim_net\n'
                    'simulated_vfs = %s=vdpasim_net,%s=vdpasim_net\n'
                    % (group, SOURCE_VF, DEST_VF))
        cls.conf = cfg.ConfigOpts()
        vdpa_conf.register_opts(cls.conf)
        cls.conf(args=[], default_config_files=[path])
        import libvirt
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        cls.libvirt = libvirt
        cls.conn = libvirt.open('qemu:///system')
        cls.dest = DestinationDaemon(os.environ['NOVA_VDPA_TESTBED_LOGS'])
        try:
            cls.dconn = cls.dest.connect(libvirt)
        except Exception:
            cls.dest.stop()
            cls.conn.close()
            super().tearDownClass()
            raise
        cls.host = designer.Host(libvirt_version=cls.conn.getLibVersion(),
                                 qemu_version=cls.conn.getVersion())

    @classmethod
    def tearDownClass(cls):
        if allocator_base.base.in_testbed():
            cls.dconn.close()
            cls.dest.stop()
            cls.conn.close()
        super().tearDownClass()

    def _destroy(self, conn, name=DOMAIN):
        try:
            dom = conn.lookupByName(name)
            if dom.isActive():
                dom.destroy()
        except self.libvirt.libvirtError:
            pass


class TestLiveMigration(MigrationBedTestCase):

    def allocate(self, alloc, port, vf):
        a = alloc.allocate(allocator.PortRequest(
            port_id=port, vf_address=vf, mac=MAC, mtu=1500))
        self.addCleanup(lambda: alloc.release(port, vf))
        return a

    def start_source(self, a):
        iface = designer.get_vdpa_interface_config(
            designer.Port(mac=MAC, mtu=1500),
            designer.device_of(a),
            self.host, flavor=objects.Flavor(name='m1.mig', vcpus=1,
                                             extra_specs={}))
        # Persistent on the source: its completed job's statistics stay
        # readable once the guest has left.
        dom = self.conn.defineXML(guest_xml(iface))
        self.addCleanup(dom.undefine)
        dom.create()
        self.addCleanup(lambda: self._destroy(self.conn))
        return dom

    def params(self, dom, chardev):
        lv = self.libvirt
        xml = dom.XMLDesc(lv.VIR_DOMAIN_XML_MIGRATABLE)
        # The destination picks its own hostname for QEMU's stream unless
        # told: both hosts are 127.0.0.1 here.
        return {lv.VIR_MIGRATE_PARAM_DEST_XML: with_chardev(xml, chardev),
                lv.VIR_MIGRATE_PARAM_URI: 'tcp://127.0.0.1',
                lv.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: '127.0.0.1'}

    def test_hosts_are_distinct(self):
        uuids = [etree.fromstring(c.getCapabilities()).findtext('host/uuid')
                 for c in (self.conn, self.dconn)]
        self.assertEqual(DEST_HOST_UUID, uuids[1])
        self.assertNotEqual(uuids[0], uuids[1])
        self.assertEqual([], self.dconn.listAllDomains())

    def test_live_migration_to_another_allocated_device(self):
        lv = self.libvirt
        src = self.allocate(self.alloc, SOURCE_PORT, SOURCE_VF)
        dst_alloc = self.allocator()
        dst = self.allocate(dst_alloc, DEST_PORT, DEST_VF)
        self.assertNotEqual(src.chardev, dst.chardev)
        # What the driver's pre_live_migration reads of the destination's
        # device, through the privileged entrypoint: it can migrate.
        self.assertIsNone(dst_alloc.vhost_backend(dst).migration_blocker(
            dst.config.device_features))
        dom = self.start_source(src)
        self.assertEqual(lv.VIR_DOMAIN_RUNNING, dom.state()[0])
        pid = qemu_pid(DOMAIN)
        self.assertTrue(holds(pid, src.chardev))
        params = self.params(dom, dst.chardev)

        if not designer.live_migration_possible(self.host):
            e = self.assertRaises(lv.libvirtError, dom.migrate3, self.dconn,
                                  params, lv.VIR_MIGRATE_LIVE)
            self.addDetail('refusal', _text(str(e)))
            self.assertTrue(designer.migration_refused(str(e)), str(e))
            # Nothing moved: the guest runs on the source device.
            self.assertEqual(lv.VIR_DOMAIN_RUNNING, dom.state()[0])
            self.assertEqual([(MAC, src.chardev)],
                             vdpa_sources(dom.XMLDesc(0)))
            self.assertTrue(holds(pid, src.chardev))
            self.assertEqual([], self.dconn.listAllDomains())
            return

        # While the job runs, the interface stays in the source domain and
        # its QEMU holds the source device, until that QEMU is gone.
        seen, done = [], threading.Event()

        def watch():
            while not done.is_set():
                if not dom.isActive():
                    break
                seen.append((vdpa_sources(dom.XMLDesc(0)),
                             holds(pid, src.chardev) or
                             not os.path.exists('/proc/%d' % pid)))
                time.sleep(0.2)
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            ddom = dom.migrate3(self.dconn, params, lv.VIR_MIGRATE_LIVE)
        finally:
            done.set()
            watcher.join()
        self.addCleanup(lambda: self._destroy(self.dconn))
        self.assertTrue(seen)
        for sources, held in seen:
            self.assertEqual([(MAC, src.chardev)], sources)
            self.assertTrue(held)
        self.assertEqual([(MAC, dst.chardev)], vdpa_sources(ddom.XMLDesc(0)))
        self.assertEqual(lv.VIR_DOMAIN_RUNNING, ddom.state()[0])
        self.assertFalse(dom.isActive())
        stats = dom.jobStats(lv.VIR_DOMAIN_JOB_STATS_COMPLETED)
        # The source device is released once the source QEMU is gone.
        deadline = time.monotonic() + 30
        while os.path.exists('/proc/%d' % pid) and (
                time.monotonic() < deadline):
            time.sleep(0.2)
        self.assertFalse(os.path.exists('/proc/%d' % pid))
        # The destination QEMU holds the destination device only.
        [dpid] = qemu_pids(DOMAIN)
        self.assertTrue(holds(dpid, dst.chardev))
        self.assertFalse(holds(dpid, src.chardev))
        self.alloc.release(SOURCE_PORT, SOURCE_VF)
        self.assertNotIn(src.name, self.devices())
        self.assertIn(dst.name, self.devices())
        # Still in use on the destination: release refused there.
        self.assertRaises(exception.VdpaDeviceInUse, dst_alloc.release,
                          DEST_PORT, DEST_VF)
        line = ('live migration with a vdpa interface (libvirt %s, QEMU %s): '
                'downtime %s ms, total %s ms' % (
                    designer.version_str(self.host.libvirt_version),
                    designer.version_str(self.host.qemu_version),
                    stats.get('downtime'), stats.get('time_elapsed')))
        self.addDetail('downtime', _text(line))


def qemu_pids(name: str) -> list[int]:
    """Pids of the QEMUs running guest ``name``, whichever daemon's.

    The destination's pid files are in its private /run/libvirt.
    """
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                argv = f.read().split(b'\0')
        except OSError:
            continue
        if b'-name' in argv and argv.index(b'-name') + 1 < len(argv) and (
                argv[argv.index(b'-name') + 1].startswith(
                    b'guest=%s,' % name.encode())):
            found.append(int(entry))
    return found


def _text(s):
    return content.text_content(s)

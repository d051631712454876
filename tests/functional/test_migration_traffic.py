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

"""Live migration of a guest that pings through its vdpa port.

The two "hosts" of :mod:`tests.functional.test_migration`. The guest boots
iPXE (:mod:`tests.functional.ipxe_guest`) and pings its own address in
rounds of 25 without end; vdpa_sim_net loops every frame back. Its
interface, its destination device and the destination XML are the
driver's (:mod:`tests.functional.migration_driver`): the VIF driver's
``get_config`` at spawn, ``prepare_destination`` on the destination
(device and migration record), and Nova's ``get_updated_guest_xml`` with
the VIF driver inside ``building_destination_xml`` on the source.

The guest's console is one file both QEMUs append to, cut into three
parts by what the test saw, not by a clock: *before* (written before the
migration was asked for), *during* (while libvirt's migration call ran,
which holds the guest's stop) and *after* (once it returned, the source
QEMU stopped for good). No ping may be lost before or after; those during
are shown, not judged. The devices' counters, read with nova-vdpa's own
netlink client (``VdpaClient.get_traffic``), show that the frames of the
pings before went through the source's device and those after through the
destination's. Downtime and the loss during the stop are the benchmark's
(``tools/bench_migration_traffic.py``), which prints them.

Where QEMU cannot migrate a vhost-vdpa netdev (QEMU 7.2, Debian 12's
userspace), the destination's driver makes no device and writes no record
(the port takes Nova's hot-unplug path), and the guest goes on pinging on
the source's device without a loss.
"""

import os
import time

import fixtures
from nova import objects
from testtools import content

from nova_vdpa import exception
from nova_vdpa.libvirt import designer
from tests.functional import ipxe_guest
from tests.functional import migration_driver
from tests.functional import test_migration

PORT = '6a1e2b3c-4d5e-4f60-8a71-9b8c7d6e5f11'
#: the destination's device's port (one kernel here: see migration_driver)
DEST_PORT = '6a1e2b3c-4d5e-4f60-8a71-9b8c7d6e5f12'
MIGRATION = '0c3f4a5b-6d7e-4f80-9a1b-2c3d4e5f6a13'
INSTANCE = '8d2e6f10-3b4c-4d5e-8f60-718293a4b514'
MAC = 'fa:16:3e:6b:02:01'
ADDRESS = '10.41.0.2'
DOMAIN = 'nova-vdpa-migrate-traffic'
FLAVOR = objects.Flavor(name='m1.mig', vcpus=1, memory_mb=128,
                        extra_specs={})
#: seconds a wait for the guest's console may take (boot 11-25 s seen
#: under nested TCG, a round of pings ~5 s; the bed's CPUs are shared)
TIMEOUT = 900


#: :func:`losses` of a device that lost no frame
NO_LOSS = (0, 0, 0, 0, 0)


def losses(t) -> tuple[int, int, int, int, int]:
    """A device's counters of lost frames (``DeviceTraffic``).

    vdpa_sim_net counts every frame it could not take from the guest or
    give back to it in one of these: a refused MAC (rx drops), no receive
    buffer posted (rx overruns), a ring it could not read or write
    (errors). Increments only: unlike rx against tx, which are added up at
    different points of the device's loop, a read while frames flow never
    sees them half-done.
    """
    return (t.rx_drops, t.rx_overruns, t.rx_errors, t.tx_errors,
            t.tx_drops)


def rounds(serial: str, n: int) -> str:
    """The console once ``n`` rounds of pings are complete."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        text = ipxe_guest.complete_lines(ipxe_guest.console(serial))
        if len(ipxe_guest.ifstat(text)) >= n:
            return text
        if time.monotonic() > deadline:
            raise AssertionError('%d rounds of pings not seen within %d s; '
                                 'the console shows:\n%s'
                                 % (n, TIMEOUT, text[-2000:]))
        time.sleep(1)


class TestLiveMigrationWithTraffic(test_migration.MigrationBedTestCase):

    def setUp(self):
        super().setUp()
        self.workdir = self.useFixture(fixtures.TempDir()).path
        self.src = migration_driver.BedDriver(self.conn, self.alloc,
                                              'source')
        self.dst = migration_driver.BedDriver(self.dconn, self.allocator(),
                                              'dest')
        self.instance = migration_driver.instance(INSTANCE, FLAVOR)

    def start(self, iface) -> tuple[object, str]:
        xml, serial = ipxe_guest.guest_xml(
            DOMAIN, [iface], self.workdir, ADDRESS, loop=True,
            uuid_=INSTANCE)
        # Persistent on the source, as Nova's guests.
        dom = self.conn.defineXML(migration_driver.with_append(xml))
        self.addCleanup(dom.undefine)
        dom.create()
        self.addCleanup(lambda: self._destroy(self.conn, DOMAIN))
        self.addCleanup(lambda: self.addDetail(
            'console', content.text_content(
                ipxe_guest.console(serial)[-4000:])))
        return dom, serial

    def assert_replies_crossed(self, text, t):
        """``text`` shows replies, and device traffic ``t`` carried them.

        Each ping: the request out and back, the reply out and back.
        (Each message carries the counters: a bed run's log is read from
        its tail, where the details may have scrolled away.)
        """
        answered = ipxe_guest.replies(text, ADDRESS)
        self.assertTrue(answered, text[-2000:])
        self.assertGreaterEqual(t.tx_packets, 2 * len(answered),
                                'replies %r, %r' % (answered, t))
        self.assertGreaterEqual(t.rx_packets, 2 * len(answered),
                                'replies %r, %r' % (answered, t))

    def test_pings_cross_the_driver_built_migration(self):
        vif = migration_driver.nova_vif(PORT, test_migration.SOURCE_VF, MAC)
        iface = migration_driver.source_interface(self.src, self.instance,
                                                  vif)
        src = self.alloc.lookup(PORT, test_migration.SOURCE_VF)
        self.assertEqual(src.chardev, iface.source_dev)
        dom, serial = self.start(iface)

        # Before: a round of pings, every one answered, through the
        # source's device.
        text = ipxe_guest.from_phase_1(rounds(serial, 1))
        t = self.client.get_traffic(src.name)
        self.addDetail('source traffic before', _text(repr(t)))
        self.assert_replies_crossed(text, t)
        self.assertEqual(NO_LOSS, losses(t), repr(t))

        # The destination's driver makes its device and the record.
        dest_data = migration_driver.migrate_data(MIGRATION, [
            migration_driver.migrate_vif(
                DEST_PORT, migration_driver.nova_vif(
                    DEST_PORT, test_migration.SOURCE_VF, MAC),
                test_migration.DEST_VF)])
        migration_driver.prepare_destination(self.dst, self.instance,
                                             dest_data)
        record = migration_driver.record_of(dest_data, DEST_PORT)
        dst = self.dst.vdpa_allocator.lookup(DEST_PORT,
                                             test_migration.DEST_VF)

        if not designer.live_migration_possible(self.host):
            # QEMU 7.2: Nova's hot-unplug path; nothing made for it here.
            self.assertIsNone(record)
            self.assertIsNone(dst)
            rounds(serial, 2)
            later = self.client.get_traffic(src.name)
            self.assertGreater(later.tx_packets, t.tx_packets,
                               'before %r, later %r' % (t, later))
            self.assertGreater(later.rx_packets, t.rx_packets,
                               'before %r, later %r' % (t, later))
            self.assertEqual(NO_LOSS, losses(later), repr(later))
            return

        self.assertIsNotNone(record)
        self.assertIsNotNone(dst)
        self.assertEqual(dst.chardev, record['chardev'])
        self.assertEqual(MIGRATION, record['migration'])
        # Not started: no frame went through the destination's device.
        self.assertRaises(exception.VdpaFeaturesNotNegotiated,
                          self.client.get_traffic, dst.name)

        # The source's migration data carries the record back (Nova's
        # RPC); the source's driver builds the destination XML from it.
        data = migration_driver.migrate_data(MIGRATION, [
            migration_driver.migrate_vif(
                PORT, vif, test_migration.DEST_VF)])
        data.vifs[0].profile = dest_data.vifs[0].profile
        dest_xml = migration_driver.destination_xml(
            self.src, self.instance, dom, data)
        self.addDetail('destination xml', _text(dest_xml))
        self.assertEqual([(MAC, dst.chardev)],
                         test_migration.vdpa_sources(dest_xml))

        lv = self.libvirt
        pid = test_migration.qemu_pid(DOMAIN)
        params = {lv.VIR_MIGRATE_PARAM_DEST_XML: dest_xml,
                  lv.VIR_MIGRATE_PARAM_URI: 'tcp://127.0.0.1',
                  lv.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: '127.0.0.1'}
        before = ipxe_guest.complete_lines(ipxe_guest.console(serial))
        t_src = self.client.get_traffic(src.name)
        ddom = dom.migrate3(self.dconn, params, lv.VIR_MIGRATE_LIVE)
        self.addCleanup(lambda: self._destroy(self.dconn, DOMAIN))
        upto = ipxe_guest.complete_lines(ipxe_guest.console(serial))
        # The guest's stop is over: what the destination's device counts
        # from here on is after it.
        t_stop = self.client.get_traffic(dst.name)
        self.assertFalse(dom.isActive())
        self.assertEqual([(MAC, dst.chardev)],
                         test_migration.vdpa_sources(ddom.XMLDesc(0)))

        # After: a full round more, through the destination's device.
        text = rounds(serial, len(ipxe_guest.ifstat(upto)) + 1)
        t_dst = self.client.get_traffic(dst.name)
        self.addDetail('destination traffic after', _text(repr(t_dst)))
        during = text[len(before):len(upto)]
        after = text[len(upto):]
        # The loop's rounds; the first ping's ARP, before them, is not
        # part of the test.
        before = ipxe_guest.from_phase_1(before)
        # A ping whose reply came after iPXE's 200 ms is shown as timed
        # out (and its late reply as an RX error): under nested TCG that
        # is the bed's speed, not a lost frame. The devices count those.
        self.addDetail('pings', _text(
            'before: %d answered, %d timed out; during: %d answered, %d '
            'timed out; after: %d answered, %d timed out' % tuple(
                n for part in (before, during, after)
                for n in (len(ipxe_guest.replies(part, ADDRESS)),
                          len(ipxe_guest.lost(part, ADDRESS))))))
        self.addDetail('traffic at the migration', _text(
            'source before the call: %r\ndestination after it: %r'
            % (t_src, t_stop)))
        # Nothing lost before the migration was asked for, nor after it
        # (the messages carry the counters, as above).
        self.assertEqual(NO_LOSS, losses(t_src), 'source: %r' % (t_src,))
        self.assertEqual(NO_LOSS, tuple(
            a - b for a, b in zip(losses(t_dst), losses(t_stop))),
            'destination at the stop: %r, after: %r' % (t_stop, t_dst))
        # Those frames went through the destination's device (the
        # source's QEMU had stopped for good).
        self.assert_replies_crossed(after, t_dst)
        self.assertGreater(t_dst.tx_packets, t_stop.tx_packets,
                           'at the stop %r, after %r' % (t_stop, t_dst))
        # The source's QEMU is gone; the destination's holds only its own
        # device.
        deadline = time.monotonic() + 60
        while os.path.exists('/proc/%d' % pid) and (
                time.monotonic() < deadline):
            time.sleep(0.2)
        self.assertFalse(os.path.exists('/proc/%d' % pid),
                         'the source QEMU %d still exists 60 s after the '
                         'migration: %s' % (pid, _proc_state(pid)))
        pids = test_migration.qemu_pids(DOMAIN)
        self.assertEqual(1, len(pids), 'QEMUs of %s: %r' % (DOMAIN, pids))
        self.assertTrue(test_migration.holds(pids[0], dst.chardev))
        self.assertFalse(test_migration.holds(pids[0], src.chardev))


def _proc_state(pid):
    """A process's state line from /proc (``Z`` for a zombie)."""
    try:
        with open('/proc/%d/status' % pid) as f:
            return next((ln.strip() for ln in f
                         if ln.startswith('State:')), 'no state')
    except OSError as e:
        return str(e)


def _text(s):
    return content.text_content(s)

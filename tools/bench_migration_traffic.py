#!/usr/bin/env python3
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

"""Live migration with traffic: pings lost and downtime, vdpa vs virtio-net.

Runs in the test bed, on either userspace::

    tools/testbed.py --userspace trixie run --services libvirt -- \\
        /opt/nova-vdpa/venv/bin/python tools/bench_migration_traffic.py
    tools/testbed.py run --services libvirt -- \\
        .tox/functional/bin/python tools/bench_migration_traffic.py

The two "hosts" are the bed's libvirtd and a second one in its own
namespaces (``tests/functional/test_migration.py``'s DestinationDaemon).
Each run starts an iPXE guest (``tests/functional/ipxe_guest.py``) that
pings in ``--rounds`` rounds of 25, ``ifstat`` after each, then idles; the
guest is live-migrated once ``--before`` rounds are complete. Both QEMUs
append to one serial file: one console, one ping sequence.

* vdpa: the source's interface, the destination's device and its
  migration record, and the destination XML are the driver's
  (``tests/functional/migration_driver.py``: the VIF driver's
  ``get_config``, ``prepare_destination``, Nova's ``get_updated_guest_xml``
  inside ``building_destination_xml``). The guest pings its own address:
  vdpa_sim_net loops the frames back, in the kernel.
* virtio-net: the same guest with a plain virtio-net NIC on QEMU's user
  network (slirp, in QEMU; under TCG libvirt uses no vhost-net), pinging
  the user network's gateway, which slirp answers; the destination XML is
  the source's migratable XML.

Printed per run:

* pings answered and timed out *before* (console written before the
  migration call), *during* (while libvirt's migration call ran) and
  *after*. iPXE waits 200 ms for a reply: under nested TCG a reply can
  come later (the guest then counts it as an RX error), so a ping timed
  out is not a frame lost; the frames are counted below;
* frames: the guest's totals (its last ``ifstat``) and, for vdpa, the
  source's and destination's device counters (``VdpaClient.get_traffic``;
  the source's read again after its QEMU exited, by binding the device to
  virtio_vdpa, which makes its counters readable: they survive a reset);
  frames lost = guest TX - (source TX + destination TX);
* downtime, two ways, the same for both NICs: libvirt's (the completed
  job's ``downtime``: from the guest's stop on the source to its resume
  on the destination), and the reply gap (host clock: the longest time
  between two ping replies appearing on the console, across the
  migration; a thread polls the console every ``--poll`` s; the median
  interval outside the migration is printed beside it);
* the vdpa / virtio-net ratios (goal: at most 2).

On QEMU 7.2 (Debian 12) vdpa cannot migrate (the driver keeps Nova's
hot-unplug path): only the virtio-net run is measured. Nothing is
asserted.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

SRC_VF = '0000:00:05.1'
DST_VF = '0000:00:05.3'
PORT = '6a1e2b3c-4d5e-4f60-8a71-9b8c7d6e5f01'
DEST_PORT = '6a1e2b3c-4d5e-4f60-8a71-9b8c7d6e5f02'
MIGRATION = '6a1e2b3c-4d5e-4f60-8a71-9b8c7d6e5f03'
INSTANCE = '6a1e2b3c-4d5e-4f60-8a71-9b8c7d6e5f04'
PLAIN_INSTANCE = '6a1e2b3c-4d5e-4f60-8a71-9b8c7d6e5f05'
MAC = 'fa:16:3e:6b:01:01'
SIM = 'vdpasim_net'
DOMAIN = 'nova-vdpa-bench-mig'
VDPA_ADDRESS = '10.40.0.2'
USER_ADDRESS = '10.0.2.15'
USER_GATEWAY = '10.0.2.2'
TIMEOUT = 1200


def configure(tmp):
    """nova-vdpa's options and its privsep daemon (as tools/demo.py)."""
    from oslo_config import cfg

    from nova_vdpa import conf as vdpa_conf
    import nova_vdpa.privsep

    path = os.path.join(tmp, 'nova.conf')
    group = vdpa_conf.vdpa_group.name
    with open(path, 'w') as f:
        f.write(f'[{group}]\nmanagement_devices = {SIM}\n'
                f'simulated_vfs = {SRC_VF}={SIM},{DST_VF}={SIM}\n')
    # Parsed into the global configuration, as nova-compute does.
    conf = cfg.CONF
    vdpa_conf.register_opts(conf)
    conf(args=[], default_config_files=[path], default_config_dirs=[])
    helper = os.path.join(os.path.dirname(sys.executable), 'privsep-helper')
    cfg.CONF.set_override(
        'helper_command', f'env PYTHONPATH={REPO} {helper} '
        f'--config-file {path}',
        group=nova_vdpa.privsep.vdpa_pctxt.cfg_section)
    return conf


class ReplyClock(threading.Thread):
    """Host-clock arrival times of the ping replies on a console file."""

    def __init__(self, path, address, poll):
        super().__init__(daemon=True)
        self.path, self.poll = path, poll
        self.needle = ('bytes from %s: seq=' % address).encode()
        self.times = []
        self.stopped = threading.Event()

    def run(self):
        offset, pending = 0, b''
        while not self.stopped.is_set():
            try:
                with open(self.path, 'rb') as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                data = b''
            now = time.monotonic()
            offset += len(data)
            pending += data
            lines = pending.split(b'\n')
            pending = lines.pop()
            for line in lines:
                # A reply line ends after its sequence number; a lost
                # ping's line goes on with ": <error>".
                if self.needle in line and not line.rstrip(
                        b'\r ').split(b'seq=')[-1].count(b':'):
                    self.times.append(now)
            self.stopped.wait(self.poll)

    def gaps(self, start, end):
        """(longest gap across [start, end], median gap outside it)."""
        pairs = list(zip(self.times, self.times[1:]))
        across = [b - a for a, b in pairs if b >= start and a <= end]
        outside = [b - a for a, b in pairs if b < start or a > end]
        return (max(across) if across else None,
                statistics.median(outside) if outside else None)


def wait_rounds(serial, n, timeout=TIMEOUT):
    from tests.functional import ipxe_guest

    deadline = time.monotonic() + timeout
    while True:
        text = ipxe_guest.complete_lines(ipxe_guest.console(serial))
        if len(ipxe_guest.ifstat(text)) >= n or ipxe_guest.END in text:
            return text
        if time.monotonic() > deadline:
            raise RuntimeError('no %d rounds within %d s:\n%s'
                               % (n, timeout, text[-2000:]))
        time.sleep(0.5)


def migrate(label, conn, dconn, xml, dest_xml_of, serial, address, args,
            after_stop=None):
    """Start, ping, migrate, ping to the end; the numbers."""
    import libvirt

    from tests.functional import ipxe_guest
    from tests.functional import migration_driver

    dom = conn.defineXML(migration_driver.with_append(xml))
    clock = ReplyClock(serial, address, args.poll)
    result = {'label': label}
    try:
        t0 = time.monotonic()
        dom.create()
        clock.start()
        ipxe_guest.wait_for(serial, 'bytes from %s: seq=' % address, TIMEOUT)
        result['first_reply_s'] = time.monotonic() - t0
        wait_rounds(serial, args.before)
        dest_xml = dest_xml_of(dom)
        params = {libvirt.VIR_MIGRATE_PARAM_DEST_XML: dest_xml,
                  libvirt.VIR_MIGRATE_PARAM_URI: 'tcp://127.0.0.1',
                  libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: '127.0.0.1'}
        before = ipxe_guest.complete_lines(ipxe_guest.console(serial))
        start = time.monotonic()
        ddom = dom.migrate3(dconn, params, libvirt.VIR_MIGRATE_LIVE)
        end = time.monotonic()
        upto = ipxe_guest.complete_lines(ipxe_guest.console(serial))
        stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        text = ipxe_guest.wait_for(serial, ipxe_guest.END, TIMEOUT)
        time.sleep(2 * args.poll)
        clock.stopped.set()
        clock.join()
        if after_stop is not None:
            result.update(after_stop(ddom))
        ddom.destroy()
    finally:
        clock.stopped.set()
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    # The loop's rounds: the first ping's ARP, before them, is left out.
    parts = {'before': ipxe_guest.from_phase_1(before),
             'during': upto[len(before):],
             'after': text[len(upto):]}
    for name, part in parts.items():
        result[name] = (len(ipxe_guest.replies(part, address)),
                        len(ipxe_guest.lost(part, address)))
    tx, txe, rx, rxe = ipxe_guest.ifstat(text)[-1]
    result.update(guest_tx=tx, guest_rx=rx, guest_txe=txe, guest_rxe=rxe)
    result['downtime_ms'] = stats.get('downtime')
    result['total_ms'] = stats.get('time_elapsed')
    result['call_s'] = end - start
    gap, usual = clock.gaps(start, end)
    result['gap_ms'] = gap and gap * 1000
    result['usual_ms'] = usual and usual * 1000
    return result


def report(r):
    print('%s:' % r['label'])
    print('  first reply %.1f s after start' % r['first_reply_s'])
    for name in ('before', 'during', 'after'):
        print('  pings %-6s answered %4d, timed out %d' % (
            (name,) + r[name]))
    if not r['after'][0]:
        print('  (no ping after the migration: the guest ended its rounds '
              'first; run again with more --rounds)')
    print('  guest frames: TX %(guest_tx)d (errors %(guest_txe)d), '
          'RX %(guest_rx)d (errors %(guest_rxe)d)' % r)
    if 'src' in r:
        s, d = r['src'], r['dst']
        print('  source device:      tx %d, rx %d, rx drops %d, overruns '
              '%d, errors %d/%d' % (s.tx_packets, s.rx_packets, s.rx_drops,
                                    s.rx_overruns, s.tx_errors,
                                    s.rx_errors))
        print('  destination device: tx %d, rx %d, rx drops %d, overruns '
              '%d, errors %d/%d' % (d.tx_packets, d.rx_packets, d.rx_drops,
                                    d.rx_overruns, d.tx_errors,
                                    d.rx_errors))
        print('  frames lost: TX %d (guest - source - destination), RX %d'
              % (r['guest_tx'] - s.tx_packets - d.tx_packets,
                 s.rx_packets + d.rx_packets - r['guest_rx']))
    print('  downtime (libvirt) %s ms; reply gap %s ms (usual interval %s '
          'ms); migration %s ms (call %.1f s)' % (
              r['downtime_ms'], _ms(r['gap_ms']), _ms(r['usual_ms']),
              r['total_ms'], r['call_s']), flush=True)


def _ms(v):
    return 'n/a' if v is None else '%.0f' % v


def final_counters(client, sysfs, name):
    """A device's counters after its QEMU let go (see the module)."""
    from nova_vdpa import exception
    from nova_vdpa.kernel import sysfs as sysfs_mod

    subprocess.run(['modprobe', 'virtio_net'], check=True, timeout=60)
    sysfs.bind(name, sysfs_mod.VIRTIO_VDPA)
    deadline = time.monotonic() + 60
    while True:
        try:
            return client.get_traffic(name)
        except exception.VdpaFeaturesNotNegotiated:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def vdpa_run(conn, dconn, host, conf, tmp, args):
    from nova import objects

    from nova_vdpa import allocator
    from nova_vdpa.kernel import netlink
    from nova_vdpa.kernel import sysfs as sysfs_mod
    from tests.functional import ipxe_guest
    from tests.functional import migration_driver as md

    flavor = objects.Flavor(name='m1.bench', vcpus=1, memory_mb=128,
                            extra_specs={})
    src_alloc = allocator.Allocator.from_conf(conf)
    dst_alloc = allocator.Allocator.from_conf(conf)
    client = netlink.VdpaClient()
    src_driver = md.BedDriver(conn, src_alloc, 'source')
    dst_driver = md.BedDriver(dconn, dst_alloc, 'dest')
    inst = md.instance(INSTANCE, flavor)
    vif = md.nova_vif(PORT, SRC_VF, MAC)
    try:
        iface = md.source_interface(src_driver, inst, vif)
        src = src_alloc.lookup(PORT, SRC_VF)
        xml, serial = ipxe_guest.guest_xml(
            DOMAIN, [iface], tmp, VDPA_ADDRESS, loop=True,
            rounds=args.rounds, uuid_=INSTANCE)
        found = {}

        def dest_xml_of(dom):
            dest_data = md.migrate_data(MIGRATION, [md.migrate_vif(
                DEST_PORT, md.nova_vif(DEST_PORT, SRC_VF, MAC), DST_VF)])
            md.prepare_destination(dst_driver, inst, dest_data)
            if md.record_of(dest_data, DEST_PORT) is None:
                raise RuntimeError('the destination wrote no migration '
                                   'record: see its log')
            found['dst'] = dst_alloc.lookup(DEST_PORT, DST_VF)
            data = md.migrate_data(MIGRATION, [md.migrate_vif(
                PORT, vif, DST_VF)])
            data.vifs[0].profile = dest_data.vifs[0].profile
            return md.destination_xml(src_driver, inst, dom, data)

        def after_stop(ddom):
            # The guest idles: the destination's counters are final.
            return {'dst': client.get_traffic(found['dst'].name)}

        result = migrate('vdpa (driver-built destination XML)', conn, dconn,
                         xml, dest_xml_of, serial, VDPA_ADDRESS, args,
                         after_stop)
        result['src'] = final_counters(client, sysfs_mod.VdpaSysfs(),
                                       src.name)
        report(result)
        return result
    finally:
        for name in ('nvdpa-' + PORT, 'nvdpa-' + DEST_PORT):
            try:
                client.delete_device(name)
            except Exception:
                pass
        client.close()
        src_alloc.close()
        dst_alloc.close()


def plain_run(conn, dconn, tmp, args):
    import libvirt
    from lxml import etree

    from tests.functional import ipxe_guest

    xml, serial = ipxe_guest.guest_xml(
        DOMAIN + '-plain', [], tmp, USER_ADDRESS, loop=True,
        ping_target=USER_GATEWAY, rounds=args.rounds, uuid_=PLAIN_INSTANCE)
    # (Nova's config class renders no type='user' interface.)
    root = etree.fromstring(xml)
    plain = etree.SubElement(root.find('devices'), 'interface', type='user')
    etree.SubElement(plain, 'mac', address=MAC)
    etree.SubElement(plain, 'model', type='virtio')
    xml = etree.tostring(root, encoding='unicode')
    result = migrate('virtio-net (QEMU user network)', conn, dconn, xml,
                     lambda dom: dom.XMLDesc(
                         libvirt.VIR_DOMAIN_XML_MIGRATABLE),
                     serial, USER_GATEWAY, args)
    report(result)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=24,
                        help='rounds of 25 pings per guest (default 24: '
                        'a migration took up to a minute in the bed)')
    parser.add_argument('--before', type=int, default=2,
                        help='rounds before the migration (default 2)')
    parser.add_argument('--poll', type=float, default=0.05,
                        help='seconds between console reads (default 0.05)')
    args = parser.parse_args()

    import libvirt

    from nova_vdpa.libvirt import designer
    from tests.functional import migration_driver  # noqa: F401 (objects)
    from tests.functional import test_migration

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    logs = os.environ.get('NOVA_VDPA_TESTBED_LOGS') or tempfile.mkdtemp()
    with tempfile.TemporaryDirectory() as tmp:
        conf = configure(tmp)
        conn = libvirt.open('qemu:///system')
        host = designer.Host(conn.getLibVersion(), conn.getVersion())
        print('libvirt %s, QEMU %s, Linux %s' % (
            designer.version_str(host.libvirt_version),
            designer.version_str(host.qemu_version), os.uname().release),
            flush=True)
        dest = test_migration.DestinationDaemon(logs)
        try:
            dconn = dest.connect(libvirt)
            vdpa = None
            if designer.live_migration_possible(host):
                vdpa = vdpa_run(conn, dconn, host, conf, tmp, args)
            else:
                print('vdpa: QEMU %s cannot live-migrate a vhost-vdpa '
                      'netdev (the driver keeps Nova\'s hot-unplug path): '
                      'not measured'
                      % designer.version_str(host.qemu_version), flush=True)
            plain = plain_run(conn, dconn, tmp, args)
            if vdpa is not None:
                for key, what in (('downtime_ms', 'downtime (libvirt)'),
                                  ('gap_ms', 'reply gap')):
                    if vdpa[key] and plain[key]:
                        print('ratio vdpa / virtio-net, %s: %.2f (goal <= 2)'
                              % (what, vdpa[key] / plain[key]))
        finally:
            dest.stop()
            conn.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())

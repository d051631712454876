#!/usr/bin/env python3
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Benchmark the allocator: lookups, listing, allocation through privsep.

``lookup`` (on the host, against the fake kernel; no root)::

    .tox/py3/bin/python tools/bench_allocator.py lookup

  One port's device (``Allocator.lookup``: sysfs, one DEV_GET and one
  CONFIG_GET on the reader thread, the chardev check) among 16, 1,024 and
  4,096 devices, next to what a full listing costs at the same size.
  Targets: < 1 ms, 4,096 / 16 < 1.5.

``bed`` (root in the test bed, vdpa_sim_net loaded)::

    tools/testbed.py run -- .tox/functional/bin/python \\
        tools/bench_allocator.py bed

  * one allocation and release the way nova-compute does it (Allocator,
    a real privsep daemon, the kernel) against the kernel floor (pre-built
    netlink messages and the three sysfs writes of a binding, nothing
    checked), interleaved cycle by cycle; target <= 1.25 x floor; and two
    paths that split the difference: the same allocator with the
    privileged calls run in-process (no daemon), and the floor itself run
    in a privsep daemon in the two calls nova-compute makes
    (tools/bench_floor.py), the least any allocator that
    escalates through oslo.privsep can cost;
  * 300 devices listed by ``Allocator.owned_devices`` and by our client,
    against ``vdpa -j dev show``.

``breakdown`` (root in the test bed, as ``bed``)::

    tools/testbed.py run -- .tox/functional/bin/python \\
        tools/bench_allocator.py breakdown

  Where an allocation and release spend their time: the allocator with
  its privileged calls in-process, interleaved with the floor and the
  floor in a privsep daemon, with every netlink request, sysfs step and
  privileged call timed (median and mean per cycle).
"""

import argparse
import collections
import functools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
# oslo.privsep imports eventlet, which announces its deprecation.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

import bench_floor  # noqa: E402
from nova_vdpa import allocator  # noqa: E402
from nova_vdpa.kernel import lifecycle  # noqa: E402
from nova_vdpa.kernel import netlink  # noqa: E402
from nova_vdpa.kernel import sysfs  # noqa: E402
import nova_vdpa.privsep.vdpa  # noqa: E402

SIM = 'vdpasim_net'
VF = '0000:00:05.1'


def port_ids(n, seed):
    return [str(uuid.UUID(int=(seed << 64) + i)) for i in range(n)]


def median_ms(samples):
    return statistics.median(samples) * 1000


# ------------------------------------------------------------ on the host
def bench_lookup(args):
    from tests.unit import fake_kernel

    result = {}
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as root:
            k = fake_kernel.FakeKernel(root)
            client, fs = k.client(), k.sysfs()
            ports = port_ids(n, n)
            for p in ports:
                name = allocator.device_name(p)
                client.create_device(name, SIM, mac='fa:16:3e:00:00:01')
                fs.bind(name, sysfs.VHOST_VDPA)
            alloc = allocator.Allocator(management_devices=[SIM],
                                        simulated_vfs={VF: SIM},
                                        client_factory=k.client, sysfs=fs)
            target = ports[n // 2]
            assert alloc.lookup(target, VF).owned
            samples = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                alloc.lookup(target, VF)
                samples.append(time.perf_counter() - t0)
            listing = []
            for _ in range(max(3, args.repeat // 200)):
                t0 = time.perf_counter()
                client.list_devices()
                client.list_configs()
                listing.append(time.perf_counter() - t0)
            alloc.close()
            client.close()
        result[n] = {'lookup_ms': median_ms(samples),
                     'full_listing_ms': median_ms(listing)}
        print('%5d devices: lookup %.3f ms (median of %d); a full device + '
              'config listing %.1f ms'
              % (n, result[n]['lookup_ms'], args.repeat,
                 result[n]['full_listing_ms']), flush=True)
    lo, hi = min(args.sizes), max(args.sizes)
    ratio = result[hi]['lookup_ms'] / result[lo]['lookup_ms']
    print('lookup %d / %d = %.2f (target < 1.5); slowest %.3f ms '
          '(target < 1 ms)' % (hi, lo, ratio,
                               max(r['lookup_ms'] for r in result.values())))
    print(json.dumps({'lookup': result, 'ratio': ratio}))


# ------------------------------------------------------------- in the bed
def floor(sock, name, mac, mtu):
    """The kernel's part: create with MAC/MTU, bind, delete. No checks."""
    bench_floor.create_and_bind_with(sock, name, SIM, mac, mtu)
    bench_floor.delete_with(sock, name)


def nova_compute(alloc, port, mac, mtu):
    """What the driver does for one port: allocate, then release."""
    a = alloc.allocate(allocator.PortRequest(port_id=port, vf_address=VF,
                                             mac=mac, mtu=mtu))
    assert a.owned and a.chardev
    alloc.release(port, VF)


def in_process(alloc, port, mac, mtu):
    """nova_compute with the privileged calls made here, not in the daemon.

    What the daemon's round trips cost: oslo.privsep runs entrypoints in
    the calling process while its context is not in client mode.
    """
    import nova_vdpa.privsep
    ctx = nova_vdpa.privsep.vdpa_pctxt
    ctx.set_client_mode(False)
    try:
        nova_compute(alloc, port, mac, mtu)
    finally:
        ctx.set_client_mode(True)


def floor_privsep(name, mac, mtu):
    """The floor in a privsep daemon: one call to create, one to delete."""
    bench_floor.create_and_bind(name, SIM, mac, mtu)
    bench_floor.delete(name)


def start_privsep(tmp):
    """Point the privsep contexts at a helper that reads our config."""
    from oslo_config import cfg

    from nova_vdpa import conf as vdpa_conf
    import nova_vdpa.privsep
    path = os.path.join(tmp, 'nova-vdpa.conf')
    group = vdpa_conf.vdpa_group.name
    with open(path, 'w') as f:
        # The device counts measured exceed the default simulator limit.
        f.write('[%s]\nmanagement_devices = %s\nsimulated_vfs = %s=%s\n'
                'max_devices_per_simulator = %d\n'
                % (group, SIM, VF, SIM,
                   vdpa_conf.MAX_DEVICES_PER_SIMULATOR))
    # Parsed into the global configuration, as nova-compute does.
    conf = cfg.CONF
    vdpa_conf.register_opts(conf)
    conf(args=[], default_config_files=[path], default_config_dirs=[])
    helper = os.path.join(os.path.dirname(sys.executable), 'privsep-helper')
    for ctx in (nova_vdpa.privsep.vdpa_pctxt,
                bench_floor.floor_pctxt):
        cfg.CONF.set_override(
            'helper_command', 'env PYTHONPATH=%s:%s %s --config-file %s'
            % (REPO, os.path.join(REPO, 'tools'), helper, path),
            group=ctx.cfg_section)
    # Reads are ~100x slower under TCG: a 300-device dump must not hit the
    # production deadline.
    return allocator.Allocator.from_conf(conf, read_timeout=300)


def clean_bed():
    """Delete every vDPA device; a client, and a socket for the floor."""
    client = netlink.VdpaClient()
    for d in client.list_devices():
        client.delete_device(d.name)
    sock = netlink.VdpaSocket()
    sock.bind()
    return client, sock


def warm_up(alloc, sock):
    """Run each path once (imports, daemons' start, reader thread)."""
    nova_compute(alloc, str(uuid.uuid4()), 'fa:16:3e:00:00:01', 1500)
    in_process(alloc, str(uuid.uuid4()), 'fa:16:3e:00:00:01', 1500)
    floor(sock, 'warm0', 'fa:16:3e:00:00:02', 1500)
    floor_privsep('warm1', 'fa:16:3e:00:00:03', 1500)


def bench_bed(args):
    client, sock = clean_bed()
    with tempfile.TemporaryDirectory() as tmp:
        alloc = start_privsep(tmp)
        warm_up(alloc, sock)
        times = {'allocator': [], 'in-process': [], 'floor': [],
                 'floor-daemon': []}
        ports = port_ids(args.cycles, 7)
        local = port_ids(args.cycles, 8)
        for i, port in enumerate(ports):
            mac = 'fa:16:3e:01:%02x:%02x' % (i // 256, i % 256)
            order = [('allocator', nova_compute, (alloc, port, mac, 1450)),
                     ('in-process', in_process,
                      (alloc, local[i], mac, 1450)),
                     ('floor', floor, (sock, 'fl%d' % i, mac, 1450)),
                     ('floor-daemon', floor_privsep, ('fd%d' % i, mac, 1450))]
            for key, fn, fargs in order[i % 4:] + order[:i % 4]:
                t0 = time.perf_counter()
                fn(*fargs)
                times[key].append(time.perf_counter() - t0)
        if client.list_devices():
            raise SystemExit('devices left behind by a cycle')
        med = {k: median_ms(v) for k, v in times.items()}
        print('%d cycles of allocate + release (median ms): allocator + '
              'privsep daemon %.1f, kernel floor %.1f, ratio %.2f (target '
              '<= 1.25); the same allocator with the privileged calls run '
              'in its own process (no daemon) %.1f, ratio %.2f; the floor '
              'in a privsep daemon (two calls, nothing checked) %.1f, '
              'ratio %.2f'
              % (args.cycles, med['allocator'], med['floor'],
                 med['allocator'] / med['floor'], med['in-process'],
                 med['in-process'] / med['floor'], med['floor-daemon'],
                 med['floor-daemon'] / med['floor']), flush=True)

        for p in port_ids(args.devices, 9):
            client.create_device(allocator.device_name(p), SIM)
        listing = {'Allocator.owned_devices': [], 'VdpaClient.list_devices':
                   [], 'vdpa -j dev show': []}
        for _ in range(args.listings):
            for key, fn in (
                    ('Allocator.owned_devices', alloc.owned_devices),
                    ('VdpaClient.list_devices', client.list_devices),
                    ('vdpa -j dev show', lambda: json.loads(subprocess.run(
                        ['vdpa', '-j', 'dev', 'show'], check=True,
                        capture_output=True, text=True).stdout)['dev'])):
                t0 = time.perf_counter()
                n = len(fn())
                listing[key].append(time.perf_counter() - t0)
                assert n == args.devices, (key, n)
        for d in client.list_devices():
            client.delete_device(d.name)
        alloc.close()

    lmed = {k: median_ms(v) for k, v in listing.items()}
    result = {'cycles': args.cycles, 'cycle_median_ms': med,
              'allocator_over_floor': med['allocator'] / med['floor'],
              'floor_daemon_over_floor': med['floor-daemon'] / med['floor'],
              'devices_listed': args.devices, 'list_median_ms': lmed}
    print('listing %d devices (median ms): %s' % (args.devices, ', '.join(
        '%s %.1f' % kv for kv in lmed.items())))
    out_dir = os.environ.get('NOVA_VDPA_TESTBED_RESULTS')
    if out_dir:
        with open(os.path.join(out_dir, 'bench_allocator.json'), 'w') as f:
            json.dump(result, f, indent=1)
    print(json.dumps(result))


def _timed(samples, owner, attr, key):
    fn = getattr(owner, attr)

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            samples[key].append(time.perf_counter() - t0)
    setattr(owner, attr, timed)


#: what the breakdown times: (owner, attributes, label prefix)
STEPS = (
    (allocator.Allocator, ('allocate', 'release', '_read', '_read_device'),
     'Allocator.'),
    (nova_vdpa.privsep.vdpa, ('create_bound_device', 'delete_device'),
     'privsep.vdpa.'),
    (lifecycle, ('create_device', 'delete_device'), 'lifecycle.'),
    (netlink.VdpaClient, ('create_device', 'delete_device', 'get_device',
                          'get_config', 'get_management_device'),
     'netlink '),
    (sysfs.VdpaSysfs, ('bind', '_write', '_unbind', '_check_unambiguous',
                       'chardev', 'driver', 'exists', 'check_not_in_use',
                       'is_open'), 'sysfs '),
)


def bench_breakdown(args):
    client, sock = clean_bed()
    with tempfile.TemporaryDirectory() as tmp:
        alloc = start_privsep(tmp)
        warm_up(alloc, sock)
        samples = collections.defaultdict(list)
        for owner, attrs, prefix in STEPS:
            for attr in attrs:
                _timed(samples, owner, attr, prefix + attr)
        totals = collections.defaultdict(list)
        for i, port in enumerate(port_ids(args.cycles, 10)):
            mac = 'fa:16:3e:02:%02x:%02x' % (i // 256, i % 256)
            order = [('in-process', in_process, (alloc, port, mac, 1450)),
                     ('floor', floor, (sock, 'fl%d' % i, mac, 1450)),
                     ('floor-daemon', floor_privsep, ('fd%d' % i, mac,
                                                      1450))]
            for key, fn, fargs in order[i % 3:] + order[:i % 3]:
                t0 = time.perf_counter()
                fn(*fargs)
                totals[key].append(time.perf_counter() - t0)
        alloc.close()
    if client.list_devices():
        raise SystemExit('devices left behind by a cycle')
    print('%d cycles (ms per cycle: median of the totals; each step\'s '
          'calls per cycle, median call, mean total)' % args.cycles)
    for key, v in totals.items():
        print('  %-36s %7.1f' % (key, median_ms(v)))
    for key, v in samples.items():
        print('  %-36s %4.1f x %6.2f = %6.2f' % (
            key, len(v) / args.cycles, median_ms(v),
            sum(v) * 1000 / args.cycles))


def main():
    # The benchmark sets simulated_vfs on purpose: no test-only warning;
    # the daemon's stderr (eventlet's deprecation notice) neither.
    logging.getLogger('nova_vdpa.allocator').setLevel(logging.ERROR)
    logging.getLogger('oslo_privsep.daemon').setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='mode', required=True)
    p = sub.add_parser('lookup')
    p.add_argument('--sizes', type=int, nargs='+', default=[16, 1024, 4096])
    p.add_argument('--repeat', type=int, default=2000)
    p.set_defaults(func=bench_lookup)
    p = sub.add_parser('bed')
    p.add_argument('--cycles', type=int, default=40)
    p.add_argument('--devices', type=int, default=300)
    p.add_argument('--listings', type=int, default=10)
    p.set_defaults(func=bench_bed)
    p = sub.add_parser('breakdown')
    p.add_argument('--cycles', type=int, default=30)
    p.set_defaults(func=bench_breakdown)
    args = parser.parse_args()
    args.func(args)


if __name__ == '__main__':
    main()

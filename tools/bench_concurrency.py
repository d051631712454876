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

"""Benchmark concurrent allocation: 64 ports from 8 threads vs serially.

Root in the test bed (vdpa_sim_net loaded)::

    tools/testbed.py run -- .tox/functional/bin/python \\
        tools/bench_concurrency.py [--ports 64] [--threads 8] [--repeat 2]

Each port has its own simulated VF (``simulated_vfs`` maps 64 VF
addresses to ``vdpasim_net``), so no two allocations share a VF lock. The
allocations and then the releases go through the Allocator and a real
privsep daemon (privsep-helper reading the same configuration file, as
nova-compute's would), once from a pool of threads and once one after
another, alternating which goes first. The kernel runs vdpa netlink
requests one at a time (the family is not ``parallel_ops``), so threads
cannot beat serial; the target is that our locking costs nothing:
parallel <= 1.2 x serial. After each allocation round the kernel is read
back: duplicates (a MAC on more than one device, or a port with a device
that has another port's MAC), leaks after the releases, and every device
with its own port's MAC, bound to vhost_vdpa.
"""

import argparse
import collections
import concurrent.futures
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
# oslo.privsep imports eventlet, which announces its deprecation.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

from oslo_config import cfg  # noqa: E402

from nova_vdpa import allocator  # noqa: E402
from nova_vdpa import conf as vdpa_conf  # noqa: E402
from nova_vdpa.kernel import netlink  # noqa: E402
from nova_vdpa.kernel import sysfs  # noqa: E402
import nova_vdpa.privsep  # noqa: E402

SIM = 'vdpasim_net'


def vf(i):
    """64 distinct PCI addresses: 0000:01:<slot>.<function>."""
    return '0000:01:%02x.%d' % (i // 8, i % 8)


def start_privsep(tmp, vfs):
    """A privsep daemon reading the same file as the allocator."""
    path = os.path.join(tmp, 'nova-vdpa.conf')
    group = vdpa_conf.list_opts()[0][0].name
    with open(path, 'w') as f:
        # Every port on one simulator: room for all of them.
        f.write('[%s]\nmanagement_devices = %s\nsimulated_vfs = %s\n'
                'max_devices_per_simulator = %d\n'
                % (group, SIM, ','.join('%s=%s' % (v, SIM) for v in vfs),
                   len(vfs)))
    conf = cfg.CONF
    vdpa_conf.register_opts(conf)
    conf(args=[], default_config_files=[path], default_config_dirs=[])
    ctx = nova_vdpa.privsep.vdpa_pctxt
    helper = os.path.join(os.path.dirname(sys.executable), 'privsep-helper')
    conf.set_override('helper_command', 'env PYTHONPATH=%s %s '
                      '--config-file %s' % (REPO, helper, path),
                      group=ctx.cfg_section)
    # Under TCG reads are ~100x slower than on a host; 8 threads queue
    # behind one another on the reader thread and the kernel's lock.
    return allocator.Allocator.from_conf(conf, read_timeout=300)


def check(client, fs, requests):
    """(duplicates, wrong) of the devices of ``requests`` now."""
    configs = {d.name: client.get_config(d.name)
               for d in client.list_devices()}
    by_mac = collections.Counter((c.mac or '').lower()
                                 for c in configs.values())
    dups = sum(n - 1 for n in by_mac.values() if n > 1)
    wrong = []
    for r in requests:
        name = allocator.device_name(r.port_id)
        c = configs.get(name)
        if c is None or c.mac != r.mac:
            wrong.append('%s: MAC %s' % (name, c and c.mac))
        elif fs.driver(name) != sysfs.VHOST_VDPA:
            wrong.append('%s: driver %s' % (name, fs.driver(name)))
    return dups, wrong


def run(alloc, requests, threads, what):
    """Allocate (or release) every request; wall seconds."""
    if what == 'allocate':
        def fn(r):
            a = alloc.allocate(r)
            assert a.owned and a.chardev, a
    else:
        def fn(r):
            alloc.release(r.port_id, r.vf_address)
    t0 = time.perf_counter()
    if threads == 1:
        for r in requests:
            fn(r)
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            # list(): raise the first error of any thread
            list(pool.map(fn, requests))
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ports', type=int, default=64)
    parser.add_argument('--threads', type=int, default=8)
    parser.add_argument('--repeat', type=int, default=2,
                        help='rounds of serial + parallel (medians)')
    args = parser.parse_args()
    if not 1 <= args.ports <= 256:
        parser.error('--ports is 1 to 256')
    logging.getLogger('nova_vdpa.allocator').setLevel(logging.ERROR)
    logging.getLogger('oslo_privsep.daemon').setLevel(logging.ERROR)

    vfs = [vf(i) for i in range(args.ports)]
    client = netlink.VdpaClient()
    fs = sysfs.VdpaSysfs()
    for d in client.list_devices():
        client.delete_device(d.name)
    times = collections.defaultdict(list)
    totals = collections.Counter()
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        alloc = start_privsep(tmp, vfs)
        # Warm up: the daemon's start, the reader thread, imports.
        warm = allocator.PortRequest(port_id=str(uuid.uuid4()),
                                     vf_address=vfs[0],
                                     mac='fa:16:3e:ff:00:01', mtu=1500)
        alloc.allocate(warm)
        alloc.release(warm.port_id)
        for rnd in range(args.repeat):
            modes = [('serial', 1), ('parallel', args.threads)]
            if rnd % 2:
                modes.reverse()
            for mode, threads in modes:
                requests = [allocator.PortRequest(
                    port_id=str(uuid.UUID(int=(rnd << 72) + (threads << 64)
                                          + i)),
                    vf_address=v, mac='fa:16:3e:%02x:%02x:%02x'
                    % (rnd, threads, i), mtu=1400)
                    for i, v in enumerate(vfs)]
                times[mode, 'allocate'].append(
                    run(alloc, requests, threads, 'allocate'))
                dups, wrong = check(client, fs, requests)
                totals['duplicates'] += dups
                totals['wrong MAC or driver'] += len(wrong)
                problems += wrong
                times[mode, 'release'].append(
                    run(alloc, requests, threads, 'release'))
                left = client.list_devices()
                totals['leaked'] += len(left)
                problems += ['left: %s' % d.name for d in left]
                for d in left:
                    client.delete_device(d.name)
        alloc.close()
    client.close()

    for p in problems[:20]:
        print(p)
    med = {k: statistics.median(v) for k, v in times.items()}
    print('%d ports, each on its own VF, through the privsep daemon '
          '(median of %d rounds, wall seconds):'
          % (args.ports, args.repeat))
    print('%-9s %9s %13s %7s' % ('', 'serial', 'parallel x%d'
                                 % args.threads, 'ratio'))
    for what in ('allocate', 'release'):
        s, p = med['serial', what], med['parallel', what]
        print('%-9s %8.2fs %12.2fs %7.2f' % (what, s, p, p / s))
    ratio = ((med['parallel', 'allocate'] + med['parallel', 'release']) /
             (med['serial', 'allocate'] + med['serial', 'release']))
    print('parallel / serial, allocate + release: %.2f (target <= 1.2)'
          % ratio)
    print('duplicates %d, leaked %d, wrong MAC or driver %d'
          % (totals['duplicates'], totals['leaked'],
             totals['wrong MAC or driver']))
    result = {'ports': args.ports, 'threads': args.threads,
              'median_s': {'%s %s' % k: v for k, v in med.items()},
              'ratio': ratio, 'totals': dict(totals)}
    out_dir = os.environ.get('NOVA_VDPA_TESTBED_RESULTS')
    if out_dir:
        with open(os.path.join(out_dir, 'bench_concurrency.json'), 'w') as f:
            json.dump(result, f, indent=1)
    sys.exit(1 if problems or totals['duplicates'] else 0)


if __name__ == '__main__':
    main()

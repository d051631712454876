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

"""Benchmark nova_vdpa.kernel against the operator recipe and the floor.

Run inside the test bed (root, vdpa_sim_net loaded)::

    tools/testbed.py run -- .tox/functional/bin/python tools/bench_kernel.py

One cycle is create + bind to vhost_vdpa + chardev lookup + delete:

* ours: nova_vdpa.kernel.lifecycle (validation, binding check, st_rdev
  check, in-use check, deletion on the worker thread with a deadline);
* recipe: ``vdpa dev add``, one shell doing the sysfs writes and the
  chardev lookup, ``vdpa dev del`` (what operators script today);
* floor: the same kernel operations in a bare loop: pre-built netlink
  messages on a bound socket and three sysfs writes, nothing checked.

The variants run interleaved, cycle by cycle, so drift hits them alike.
Then 256 devices are listed by our client and by ``vdpa -j dev show``.
Targets are ratios: ours <= 1.25 x floor, recipe >= 3 x ours.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import bench_floor  # noqa: E402
from nova_vdpa.kernel import lifecycle  # noqa: E402
from nova_vdpa.kernel import netlink  # noqa: E402
from nova_vdpa.kernel import sysfs  # noqa: E402

SIM = 'vdpasim_net'
BUS = '/sys/bus/vdpa'
RECIPE = ('echo vhost_vdpa > {bus}/devices/{n}/driver_override && '
          'echo {n} > {bus}/devices/{n}/driver/unbind && '
          'echo {n} > {bus}/drivers_probe && '
          'ls -d {bus}/devices/{n}/vhost-vdpa-* >/dev/null')


def ours(client, fs, name):
    lifecycle.create_device(client, fs, name, SIM)
    lifecycle.delete_device(fs, name, timeout=10)


def recipe(name):
    subprocess.run(['vdpa', 'dev', 'add', 'name', name, 'mgmtdev', SIM],
                   check=True)
    subprocess.run(['sh', '-c', RECIPE.format(bus=BUS, n=name)], check=True)
    subprocess.run(['vdpa', 'dev', 'del', name], check=True)


def floor(sock, name):
    bench_floor.create_and_bind_with(sock, name, SIM)
    bench_floor.delete_with(sock, name)


def timed(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cycles', type=int, default=200)
    parser.add_argument('--devices', type=int, default=256)
    parser.add_argument('--listings', type=int, default=20)
    args = parser.parse_args()

    client = netlink.VdpaClient()
    fs = sysfs.VdpaSysfs()
    sock = netlink.VdpaSocket()
    sock.bind()
    for d in client.list_devices():
        client.delete_device(d.name)

    # Warm up every path once (imports, worker thread, page cache).
    ours(client, fs, 'warm0')
    recipe('warm1')
    floor(sock, 'warm2')

    times = {'ours': [], 'recipe': [], 'floor': []}
    for i in range(args.cycles):
        order = [('ours', ours, (client, fs, 'bo%d' % i)),
                 ('recipe', recipe, ('br%d' % i,)),
                 ('floor', floor, (sock, 'bf%d' % i))]
        # Rotate who goes first, so no variant always follows another.
        for key, fn, fargs in order[i % 3:] + order[:i % 3]:
            times[key].append(timed(fn, *fargs))
    if client.list_devices():
        raise SystemExit('devices left behind by a cycle')

    for i in range(args.devices):
        client.create_device('ls%d' % i, SIM)
    listing = {'ours': [], 'vdpa -j dev show': []}
    for _ in range(args.listings):
        t = time.perf_counter()
        n_ours = len(client.list_devices())
        listing['ours'].append(time.perf_counter() - t)
        t = time.perf_counter()
        out = subprocess.run(['vdpa', '-j', 'dev', 'show'], check=True,
                             capture_output=True, text=True).stdout
        n_ref = len(json.loads(out)['dev'])
        listing['vdpa -j dev show'].append(time.perf_counter() - t)
    assert n_ours == n_ref == args.devices, (n_ours, n_ref)
    for d in client.list_devices():
        client.delete_device(d.name)

    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    lmed = {k: statistics.median(v) * 1000 for k, v in listing.items()}
    result = {
        'cycles': args.cycles,
        'cycle_median_ms': med,
        'ours_over_floor': med['ours'] / med['floor'],
        'recipe_over_ours': med['recipe'] / med['ours'],
        'devices_listed': args.devices,
        'list_median_ms': lmed,
        'vdpa_over_ours_listing': lmed['vdpa -j dev show'] / lmed['ours'],
    }
    print('%d cycles of create + bind + chardev lookup + delete '
          '(median ms):' % args.cycles)
    print('  %-8s %9s %9s %9s' % ('', 'ours', 'recipe', 'floor'))
    print('  %-8s %9.1f %9.1f %9.1f'
          % ('median', med['ours'], med['recipe'], med['floor']))
    print('  ours / floor   = %.2f  (target <= 1.25)'
          % result['ours_over_floor'])
    print('  recipe / ours  = %.2f  (target >= 3)'
          % result['recipe_over_ours'])
    print('listing %d devices (median ms): ours %.1f, vdpa -j dev show %.1f,'
          ' ratio vdpa/ours %.2f' % (args.devices, lmed['ours'],
                                     lmed['vdpa -j dev show'],
                                     result['vdpa_over_ours_listing']))
    out_dir = os.environ.get('NOVA_VDPA_TESTBED_RESULTS')
    if out_dir:
        with open(os.path.join(out_dir, 'bench_kernel.json'), 'w') as f:
            json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == '__main__':
    main()

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

"""Render and parse vdpa interface XML: nova-vdpa's config next to Nova's.

Renders 1,000 ``<interface type='vdpa'>`` documents with
``LibvirtConfigGuestVdpaInterface`` (every option set) and parses them back,
then does the same with Nova's own ``LibvirtConfigGuestInterface`` for the
subset Nova renders for vdpa (mac, source, model) with both classes, in the
same process, and prints the time per interface. Runs on the host, no VM::

    .tox/py3/bin/python tools/bench_libvirt_config.py [--count N]
"""

import argparse
import os
import statistics
import sys
import time

from nova.virt.libvirt import config as vconfig

# Measure the checkout, not a nova_vdpa installed in the virtualenv.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from nova_vdpa.libvirt import config  # noqa: E402


def ours(i):
    conf = config.LibvirtConfigGuestVdpaInterface()
    conf.mac_addr = 'fa:16:3e:%02x:%02x:%02x' % (i >> 16 & 255,
                                                 i >> 8 & 255, i & 255)
    conf.source_dev = '/dev/vhost-vdpa-%d' % i
    conf.model = 'virtio'
    conf.vhost_queues = 4
    conf.vhost_rx_queue_size = 512
    conf.vhost_tx_queue_size = 512
    conf.driver_packed = True
    conf.driver_page_per_vq = True
    conf.boot_order = 1
    conf.alias = 'ua-%d' % i
    conf.device_addr = config.pci_address(0, 0, i % 32, 0)
    return conf


def ours_subset(i):
    return _subset(config.LibvirtConfigGuestVdpaInterface(), i)


def novas(i):
    conf = vconfig.LibvirtConfigGuestInterface()
    conf.net_type = 'vdpa'
    return _subset(conf, i)


def _subset(conf, i):
    conf.mac_addr = 'fa:16:3e:%02x:%02x:%02x' % (i >> 16 & 255,
                                                 i >> 8 & 255, i & 255)
    conf.source_dev = '/dev/vhost-vdpa-%d' % i
    conf.model = 'virtio'
    return conf


def run(make, cls, count):
    """Return (render, parse) seconds for ``count`` interfaces."""
    confs = [make(i) for i in range(count)]
    start = time.perf_counter()
    docs = [c.to_xml() for c in confs]
    rendered = time.perf_counter()
    for doc in docs:
        cls().parse_str(doc)
    parsed = time.perf_counter()
    return rendered - start, parsed - rendered


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--count', type=int, default=1000)
    parser.add_argument('--repeat', type=int, default=5,
                        help='runs per class; the median is printed')
    args = parser.parse_args()

    rows = [('nova-vdpa, all options', ours,
             config.LibvirtConfigGuestVdpaInterface),
            ('nova-vdpa, mac+source', ours_subset,
             config.LibvirtConfigGuestVdpaInterface),
            ('nova, mac+source', novas,
             vconfig.LibvirtConfigGuestInterface)]
    print('%d interfaces, median of %d runs, microseconds per interface'
          % (args.count, args.repeat))
    print('%-26s %10s %10s %10s' % ('', 'render', 'parse', 'total'))
    for label, make, cls in rows:
        runs = [run(make, cls, args.count) for _ in range(args.repeat)]
        render = statistics.median(r[0] for r in runs) / args.count * 1e6
        parse = statistics.median(r[1] for r in runs) / args.count * 1e6
        print('%-26s %10.1f %10.1f %10.1f' % (label, render, parse,
                                              render + parse))


if __name__ == '__main__':
    main()

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

"""Crash safety, the daemon's modes: SIGKILL the privsep daemon only.

Run through ``tools/crash_safety.py --mode daemon`` or ``--mode
daemon-unread`` (root in the test bed, vdpa_sim_net loaded). The process
that allocates lives on, as nova-compute does when the OOM killer or an
admin kills its privsep daemon; no reconcile runs (that is nova-compute's
start-up). Each round starts one operation on a thread (allocate a new
port, or release one) through a real daemon (privsep-helper, CAP_NET_ADMIN
only) and kills that daemon:

* ``daemon``: after a random delay within the measured duration of the
  operation, so anywhere in a create, bind or delete (or just after it);
* ``daemon-unread``: SIGSTOP first, then the operation sends its request,
  then SIGKILL: the request dies unread in the daemon's socket.

Then it checks, reading the kernel back: devices of ours half made (not on
vhost_vdpa, so unbound or on virtio_vdpa with a host netdev) right after
the killed call returned; then the same operation again (the first call
after the kill), and leaked (ours, for no port that should have one),
missing and half-made devices after it. It prints the totals, how the
killed calls ended and how long they and the first calls after them took.
"""

import collections
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time

from oslo_config import cfg

from nova_vdpa import allocator
from nova_vdpa import conf as vdpa_conf
from nova_vdpa import exception
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs
import nova_vdpa.privsep
from nova_vdpa.privsep import vdpa as priv_vdpa
from tests.functional import base

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM = 'vdpasim_net'
CONTEXT = b'nova_vdpa.privsep.vdpa_pctxt'
#: a port that never has a device
NO_PORT = 'c4a5da00-0000-4000-8000-ffffffffffff'


def start_daemon_config(tmp, simulated):
    """Our configuration file, read by the allocator and the daemon."""
    path = os.path.join(tmp, 'nova-vdpa.conf')
    group = vdpa_conf.vdpa_group.name
    with open(path, 'w') as f:
        f.write('[%s]\nmanagement_devices = %s\nsimulated_vfs = %s\n'
                % (group, SIM, ','.join('%s=%s' % (vf, SIM)
                                        for vf in simulated)))
    conf = cfg.ConfigOpts()
    vdpa_conf.register_opts(conf)
    conf(args=[], default_config_files=[path])
    ctx = nova_vdpa.privsep.vdpa_pctxt
    helper = os.path.join(os.path.dirname(sys.executable), 'privsep-helper')
    # The daemon imports this checkout, as the allocator does.
    cfg.CONF.set_override(
        'helper_command', 'env PYTHONPATH=%s %s --config-file %s'
        % (REPO, helper, path), group=ctx.cfg_section)
    priv_vdpa._conf = conf
    return conf


def wait_sent(timeout=120.0):
    """Until a request is in the daemon's socket, its reply not back."""
    channel = nova_vdpa.privsep.vdpa_pctxt.channel
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with channel.lock:
            if channel.outstanding_msgs:
                return True
        time.sleep(0.005)
    return False


class Round:
    """One operation on a thread: its outcome and when it ended."""

    def __init__(self, fn, *args):
        self.outcome = None
        self.ended = None
        self.thread = threading.Thread(target=self._run, args=(fn,) + args)
        self.thread.start()

    def _run(self, fn, *args):
        try:
            fn(*args)
            self.outcome = 'succeeded'
        except exception.VdpaPrivsepDied:
            self.outcome = 'VdpaPrivsepDied'
        except exception.NovaVdpaException as e:
            self.outcome = type(e).__name__
        finally:
            self.ended = time.monotonic()


def run(args):
    """The daemon modes of tools/crash_safety.py; returns the exit code."""
    seed = args.seed if args.seed is not None else random.randrange(256)
    rng = random.Random(seed)
    ports = ['c4a5da00-0000-4000-8000-%012x' % i for i in range(args.ports)]
    vfs = {p: '0000:00:06.%d' % i if i < 8 else '0000:00:07.%d' % (i - 8)
           for i, p in enumerate(ports)}
    tmp = tempfile.TemporaryDirectory()
    conf = start_daemon_config(tmp.name, vfs.values())
    alloc = allocator.Allocator.from_conf(conf, read_timeout=120)
    client = netlink.VdpaClient()
    bus = sysfs.VdpaSysfs()
    for d in client.list_devices():
        if allocator.is_ours(d.name):
            client.delete_device(d.name)

    def request(port):
        return allocator.PortRequest(
            port_id=port, vf_address=vfs[port],
            mac='fa:16:3e:da:%02x:%02x' % (seed % 256, ports.index(port)))

    def op_of(port, have):
        if port in have:
            return 'release', alloc.release, port
        return 'allocate', alloc.allocate, request(port)

    def half_made():
        return sorted(n for n in (d.name for d in client.list_devices())
                      if allocator.is_ours(n)
                      and bus.driver(n) != sysfs.VHOST_VDPA)

    # A timing run per operation, through a daemon started first.
    t0 = time.monotonic()
    alloc.allocate(request(ports[0]))
    start_cost = time.monotonic() - t0
    t0 = time.monotonic()
    alloc.release(ports[0])
    durations = {'release': time.monotonic() - t0}
    t0 = time.monotonic()
    alloc.allocate(request(ports[0]))
    durations['allocate'] = time.monotonic() - t0
    alloc.release(ports[0])

    have = set()
    totals = collections.Counter()
    outcomes = collections.Counter()
    killed_took, next_took = [], []
    problems = []
    rounds = kills = 0
    t_start = time.monotonic()
    while kills < args.kills and rounds < 3 * args.kills:
        rounds += 1
        port = rng.choice(ports)
        what, fn, arg = op_of(port, have)
        pid = base.privsep_daemon_pid(CONTEXT)
        if pid is None:
            # No call since the last kill: a harmless one starts a daemon.
            try:
                priv_vdpa.delete_device(allocator.device_name(NO_PORT), 10)
            except exception.VdpaDeviceNotFound:
                pass
            pid = base.privsep_daemon_pid(CONTEXT)
        if args.mode == 'daemon-unread':
            os.kill(pid, signal.SIGSTOP)
            r = Round(fn, arg)
            if not wait_sent():
                problems.append('round %d: no request was sent' % rounds)
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            kills += 1
        else:
            r = Round(fn, arg)
            r.thread.join(rng.uniform(0, durations[what]))
            killed_at = time.monotonic()
            if r.thread.is_alive():
                os.kill(pid, signal.SIGKILL)
                kills += 1
            else:
                outcomes['%s ended before the kill' % what] += 1
                # Killed between calls: the next call meets a dead one.
                os.kill(pid, signal.SIGKILL)
        r.thread.join()
        if r.thread.is_alive() or r.ended is None:
            problems.append('round %d: %s never returned' % (rounds, what))
            continue
        killed_took.append(max(0.0, r.ended - killed_at))
        outcomes['%s: %s' % (what, r.outcome)] += 1
        left = half_made()
        totals['half made after the killed call'] += len(left)
        if left:
            problems.append('round %d (%s %s): half made after the killed '
                            'call: %s' % (rounds, what, r.outcome, left))
        # The first call after the kill: the same operation again.
        t0 = time.monotonic()
        try:
            fn(arg)
            outcome = 'succeeded'
        except exception.NovaVdpaException as e:
            outcome = type(e).__name__
            problems.append('round %d: the call after the kill failed: %s'
                            % (rounds, e))
        next_took.append(time.monotonic() - t0)
        outcomes['next %s: %s' % (what, outcome)] += 1
        if what == 'allocate' and outcome == 'succeeded':
            have.add(port)
        elif what == 'release' and outcome == 'succeeded':
            have.discard(port)
        devices = {d.name for d in client.list_devices()
                   if allocator.is_ours(d.name)}
        want = {allocator.device_name(p) for p in have}
        leaked = sorted(devices - want)
        missing = sorted(want - devices)
        left = half_made()
        totals['leaked'] += len(leaked)
        totals['missing'] += len(missing)
        totals['half made after the next call'] += len(left)
        if leaked or missing or left:
            problems.append('round %d (%s): leaked %s, missing %s, half '
                            'made %s' % (rounds, what, leaked, missing,
                                         left))
        # A round costs a daemon start (seconds to minutes under TCG):
        # show each as it ends, in case the bed's timeout comes first.
        print('round %d: %s %s, %.1f s after the kill; next call %s in '
              '%.1f s; leaked %d, missing %d, half made %d'
              % (rounds, what, r.outcome, killed_took[-1], outcome,
                 next_took[-1], len(leaked), len(missing), len(left)),
              flush=True)
    wall = time.monotonic() - t_start
    for p in list(have):
        alloc.release(p)
    alloc.close()
    client.close()
    nova_vdpa.privsep.vdpa_pctxt.stop()
    tmp.cleanup()

    for p in problems[:20]:
        print(p)
    print('mode %s, seed %d, %d ports, %d rounds, %d SIGKILLs of the '
          'privsep daemon inside an operation, %.0f s; a first daemon '
          'start and allocate took %.1f s, then allocate %.1f s, release '
          '%.1f s' % (args.mode, seed, args.ports, rounds, kills, wall,
                      start_cost, durations['allocate'],
                      durations['release']))
    print('leaked %d, missing %d, half made after the killed call %d, '
          'after the next call %d' % (
              totals['leaked'], totals['missing'],
              totals['half made after the killed call'],
              totals['half made after the next call']))

    def spread(xs):
        return 'median %.1f s, max %.1f s' % (statistics.median(xs),
                                              max(xs)) if xs else '-'
    print('killed call returned after the kill: %s' % spread(killed_took))
    print('first call after the kill (a new daemon): %s'
          % spread(next_took))
    print('outcomes:')
    for what, n in sorted(outcomes.items()):
        print('  %4d  %s' % (n, what))
    bad = (totals['leaked'] + totals['missing'] +
           totals['half made after the killed call'] +
           totals['half made after the next call'])
    return 1 if bad or problems or kills < args.kills else 0

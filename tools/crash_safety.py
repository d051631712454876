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

"""Crash safety: SIGKILL the allocator mid-operation, then reconcile.

Root in the test bed (vdpa_sim_net loaded)::

    tools/testbed.py run -- .tox/functional/bin/python \\
        tools/crash_safety.py [--kills 200] [--ports 6] [--seed N]

``--mode daemon`` and ``--mode daemon-unread`` kill the privsep daemon
instead, while the allocating process lives on (no reconcile):
:mod:`crash_safety_daemon` says how.

A parent that has imported everything forks one victim per round (a
Python start costs seconds under TCG; a fork costs milliseconds). The
victim runs one to three operations on a few ports (allocate a new port,
allocate an expected one again with another MTU, which deletes and makes
its device again, or release), reporting over a pipe each kernel step it
enters and leaves (netlink requests, sysfs writes) and each operation it
starts and ends. The parent waits for the victim to be ready and sends
it SIGKILL, half of the time (``--step-share``) at a kernel write step
chosen at random (the victim stops there: before or after DEV_NEW,
DEV_DEL, the driver_override, unbind or drivers_probe write), otherwise
after a random delay within the measured duration of the operations (the
pipe's last event then says where it landed: inside a step, or after
one). Then, as a restarted nova-compute would,
it runs :meth:`Allocator.reconcile` with the ports that should have a
device: every operation that ended, and the interrupted one or not at
random (Nova decides the instance's fate, either way must reconcile). It
checks, reading the kernel back: leaked (devices of ours for no expected
port), double-allocated (a MAC on more than one device, or a device with
another port's MAC), wrong (an expected port whose device is missing or
has another MAC or MTU, is not bound to vhost_vdpa or has no chardev
node), reconcile failures, and an operator's device that must stay
untouched. It prints the totals and the distribution of kill points.

Why the victim runs the privileged calls in-process (oslo.privsep client
mode off, as root) and not through a privsep daemon: a privsep daemon
serves each call on a thread of its own pool, and when its client dies
the channel closes but the daemon's exit waits for the calls in flight to
finish (concurrent.futures joins its workers at interpreter exit). Killing
only the client therefore never splits a privileged call: the kernel
steps inside one (create, then bind; the override, unbind and probe writes
of a binding) happen all or nothing, and only the points between calls
are reached. A SIGKILL of the whole service (systemd's default
``KillMode=control-group`` takes the daemon with nova-compute, as does an
OOM kill of the group or a host crash) does split them; running the calls
in the victim itself reaches every point between two kernel steps, which
covers the client-only kill as well.
"""

import argparse
import collections
import concurrent.futures
import json
import logging
import os
import random
import select
import signal
import statistics
import sys
import threading
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
from nova_vdpa import exception  # noqa: E402
from nova_vdpa.kernel import lifecycle  # noqa: E402
from nova_vdpa.kernel import netlink  # noqa: E402
from nova_vdpa.kernel import sysfs  # noqa: E402
import nova_vdpa.privsep  # noqa: E402
from nova_vdpa.privsep import vdpa as priv_vdpa  # noqa: E402

SIM = 'vdpasim_net'
OPERATOR_DEVICE = 'opcrash0'
MTUS = (1500, 1400, 9000)


def vf(i):
    return '0000:00:06.%d' % i if i < 8 else '0000:00:07.%d' % (i - 8)


class Ports:
    """The ports of the run: ids, VFs, MACs; requests with a given MTU."""

    def __init__(self, n, seed):
        self.ids = [str(uuid.UUID(int=(0xc4a5 << 64) + (seed << 16) + i))
                    for i in range(n)]
        self.vf = {p: vf(i) for i, p in enumerate(self.ids)}
        self.mac = {p: 'fa:16:3e:cc:%02x:%02x' % (seed % 256, i)
                    for i, p in enumerate(self.ids)}

    def request(self, port, mtu):
        return allocator.PortRequest(port_id=port, vf_address=self.vf[port],
                                     mac=self.mac[port], mtu=mtu)


def make_allocator(ports):
    return allocator.Allocator(
        management_devices=[SIM],
        simulated_vfs={ports.vf[p]: SIM for p in ports.ids},
        # Reads are ~100x slower under TCG than on a host.
        read_timeout=120)


# ------------------------------------------------------------- the victim
#: (class, method, step name) traced in the victim: every kernel write and
#: read the allocator makes
_NETLINK = [('create_device', 'netlink DEV_NEW'),
            ('delete_device', 'netlink DEV_DEL'),
            ('get_device', 'netlink DEV_GET'),
            ('get_config', 'netlink CONFIG_GET'),
            ('get_management_device', 'netlink MGMTDEV_GET')]


def _traced(fn, step, emit):
    def wrapper(*args, **kwargs):
        emit('B', step(*args) if callable(step) else step)
        result = fn(*args, **kwargs)
        emit('E', step(*args) if callable(step) else step)
        return result
    return wrapper


def _sysfs_step(self, path, value):
    parent = os.path.basename(os.path.dirname(path))
    name = os.path.basename(path)
    if name in ('bind', 'unbind'):
        return 'sysfs %s/%s' % (parent, name)
    return 'sysfs ' + name


def victim(fd, ports, ops, target):
    """The child: trace, then run ``ops``; never returns.

    :param target: ``(event line, occurrence)`` to stop at, or None.
    """
    seen = collections.Counter()

    def emit(kind, what):
        line = '%s %s' % (kind, what)
        os.write(fd, (line + '\n').encode())
        seen[line] += 1
        if target == (line, seen[line]):
            # The parent kills us here: nothing more happens meanwhile.
            threading.Event().wait()

    try:
        # What the parent's threads own does not exist here: fresh
        # sockets and deletion worker for this process.
        priv_vdpa._local = threading.local()
        lifecycle._workers = {}
        lifecycle._workers_lock = threading.Lock()
        for method, step in _NETLINK:
            setattr(netlink.VdpaClient, method, _traced(
                getattr(netlink.VdpaClient, method), step, emit))
        sysfs.VdpaSysfs._write = _traced(sysfs.VdpaSysfs._write,
                                         _sysfs_step, emit)
        alloc = make_allocator(ports)
        # The reader thread's socket, made before the clock starts.
        alloc.owned_devices()
        emit('R', 'ready')
        for op, arg in ops:
            emit('B', 'op ' + op)
            if op == 'allocate':
                alloc.allocate(arg)
            else:
                alloc.release(arg)
            emit('E', 'op ' + op)
        emit('D', 'done')
        os._exit(0)
    except BaseException as e:
        try:
            emit('X', '%s: %s' % (type(e).__name__, e))
        finally:
            os._exit(1)


# ------------------------------------------------------------- the parent
def plan(rng, ports, expected):
    """1-3 operations on distinct ports: allocate, re-allocate, release."""
    ops = []
    for port in rng.sample(ports.ids, rng.randint(1, 3)):
        if port in expected:
            if rng.random() < 0.7:
                ops.append(('release', port))
            else:
                mtu = rng.choice([m for m in MTUS
                                  if m != expected[port].mtu])
                ops.append(('allocate', ports.request(port, mtu)))
        else:
            ops.append(('allocate', ports.request(port, rng.choice(MTUS))))
    return ops


def run_victim(ports, ops, delay, target):
    """Fork, wait for ready, SIGKILL; the events, killed, seconds.

    :param delay: seconds after ready to kill at, or None.
    :param target: ``(event line, occurrence)``: kill when the victim
        reports it (it waits there), or None.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        victim(w, ports, ops, target)
    os.close(w)
    buf = b''
    while b'R ready\n' not in buf:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        buf += chunk
    t0 = time.monotonic()
    killed = False
    deadline = t0 + (delay if delay is not None else 3600)
    want = target and (target[0] + '\n').encode()
    while b'R ready\n' in buf:
        if want and buf.count(want) >= target[1]:
            left = 0.0
        else:
            left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            killed = True
            break
        ready, _, _ = select.select([r], [], [], left)
        if ready:
            chunk = os.read(r, 65536)
            if not chunk:
                break  # the victim ended before the kill
            buf += chunk
    _, status = os.waitpid(pid, 0)
    elapsed = time.monotonic() - t0
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        buf += chunk
    os.close(r)
    events = [line.split(' ', 1) for line in
              buf.decode().splitlines() if line]
    return events, killed and os.WIFSIGNALED(status), elapsed


#: the kernel writes of each operation in the bed (a new device
#: autoprobes to virtio_vdpa, loaded first); a step-targeted kill picks
#: the entry or the exit of one of them
_BIND = ['netlink DEV_NEW', 'sysfs driver_override',
         'sysfs virtio_vdpa/unbind', 'sysfs drivers_probe']
WRITES = {'allocate': _BIND, 'reallocate': ['netlink DEV_DEL'] + _BIND,
          'release': ['netlink DEV_DEL']}


def pick_target(rng, ops, expected):
    """A write step boundary the operations will reach, at random."""
    i = rng.randrange(len(ops))
    op, arg = ops[i]
    kind = 'release' if op == 'release' else (
        'reallocate' if arg.port_id in expected else 'allocate')
    step = rng.choice(WRITES[kind])
    line = '%s %s' % (rng.choice('BE'), step)
    # Earlier operations of the sequence reach the same step too.
    before = 0
    for o, a in ops[:i]:
        k = 'release' if o == 'release' else (
            'reallocate' if a.port_id in expected else 'allocate')
        before += WRITES[k].count(step)
    return line, before + 1


def kill_point(events, target):
    """Where the kill landed, and how many operations ended before it."""
    done = sum(1 for e in events if e in (['E', 'op allocate'],
                                          ['E', 'op release']))
    kind, what = events[-1] if events else ('-', 'before ready')
    if target is not None:
        where = '%s %s (step)' % ('before' if kind == 'B' else 'after',
                                  what)
    elif kind == 'B' and what.startswith('op '):
        where = 'in %s, before its first kernel step (timed)' % what[3:]
    elif kind == 'B':
        where = 'in %s (timed)' % what
    elif kind == 'E' and what.startswith('op '):
        where = 'between operations (timed)'
    elif kind == 'E':
        where = 'after %s (timed)' % what
    elif kind == 'R':
        where = 'before the first operation (timed)'
    else:
        where = what
    return where, done


class Checker:
    """The parent's kernel work, on one thread that is not the main one.

    The victim is forked from the main thread, which therefore never owns
    a pyroute2 socket or event loop the child would inherit.
    """

    def __init__(self, ports):
        self.ports = ports
        self.pool = concurrent.futures.ThreadPoolExecutor(1)
        self.alloc = self.run(make_allocator, ports)
        self.client = self.run(netlink.VdpaClient)
        self.sysfs = sysfs.VdpaSysfs()

    def run(self, fn, *args):
        return self.pool.submit(fn, *args).result()

    def reconcile(self, expected):
        return self.run(self.alloc.reconcile, list(expected.values()))

    def check(self, expected):
        return self.run(self._check, expected)

    def _check(self, expected):
        devices = {d.name: d for d in self.client.list_devices()}
        configs = {n: self.client.get_config(n) for n in devices}
        want = {allocator.device_name(p): r for p, r in expected.items()}
        ours = {n for n in devices if allocator.is_ours(n)}
        leaked = sorted(ours - set(want))
        by_mac = collections.defaultdict(list)
        for n, c in configs.items():
            by_mac[(c.mac or '').lower()].append(n)
        mac_port = {m: allocator.device_name(p)
                    for p, m in self.ports.mac.items()}
        double = sorted(
            {n for m, names in by_mac.items() if m in mac_port
             and len(names) > 1 for n in names} |
            {n for n, c in configs.items() if n in ours and
             (c.mac or '').lower() in mac_port and
             mac_port[(c.mac or '').lower()] != n})
        wrong = []
        for n, req in want.items():
            c = configs.get(n)
            why = None
            if c is None:
                why = 'missing'
            elif (c.mac, c.mtu) != (req.mac, req.mtu):
                why = 'MAC/MTU %s/%s' % (c.mac, c.mtu)
            elif self.sysfs.driver(n) != sysfs.VHOST_VDPA:
                why = 'driver %s' % self.sysfs.driver(n)
            else:
                try:
                    os.stat(self.sysfs.chardev(n))
                except (OSError, exception.VdpaChardevNotFound) as e:
                    why = 'chardev: %s' % e
            if why:
                wrong.append('%s %s' % (n, why))
        operator = OPERATOR_DEVICE in devices and \
            configs[OPERATOR_DEVICE].mac == '02:00:00:0c:00:01'
        return leaked, double, wrong, operator

    def close(self):
        self.run(self.alloc.close)
        self.run(self.client.close)
        self.pool.shutdown()


def setup_privsep():
    """Privileged calls in this process (see the module docstring)."""
    conf = cfg.ConfigOpts()
    vdpa_conf.register_opts(conf)
    conf(args=[], default_config_files=[])
    conf.set_override('management_devices', [SIM],
                      group=vdpa_conf.list_opts()[0][0].name)
    priv_vdpa._conf = conf
    nova_vdpa.privsep.vdpa_pctxt.set_client_mode(False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--kills', type=int, default=200,
                        help='victims to kill inside their operations')
    parser.add_argument('--ports', type=int, default=6)
    parser.add_argument('--seed', type=int, default=None)
    parser.add_argument('--calibrate', type=int, default=4,
                        help='rounds run to the end first, to time them')
    parser.add_argument('--step-share', type=float, default=0.5,
                        help='share of kills at a kernel write step; the '
                        'others at a random time')
    parser.add_argument('--mode', default='allocator',
                        choices=('allocator', 'daemon', 'daemon-unread'),
                        help='what is killed: the allocating process, '
                        'or only its privsep daemon (at a random time, '
                        'or with a request unread)')
    args = parser.parse_args()
    if not 1 <= args.ports <= 16:
        parser.error('--ports is 1 to 16')
    if args.mode != 'allocator':
        logging.getLogger('nova_vdpa').setLevel(logging.ERROR)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import crash_safety_daemon
        sys.exit(crash_safety_daemon.run(args))
    seed = args.seed if args.seed is not None else random.randrange(256)
    rng = random.Random(seed)
    # The allocator's info lines and the test-only option's warning would
    # drown the totals; failures are counted, not logged.
    logging.getLogger('nova_vdpa').setLevel(logging.ERROR)

    setup_privsep()
    ports = Ports(args.ports, seed)
    checker = Checker(ports)
    client = checker.client
    for d in checker.run(client.list_devices):
        checker.run(client.delete_device, d.name)
    checker.run(lambda: client.create_device(
        OPERATOR_DEVICE, SIM, mac='02:00:00:0c:00:01'))

    expected = {}
    totals = collections.Counter()
    where = collections.Counter()
    per_op = []
    rounds = kills = 0
    t_start = time.monotonic()
    problems = []
    while kills < args.kills and rounds < 3 * args.kills + args.calibrate:
        rounds += 1
        ops = plan(rng, ports, expected)
        calibrating = rounds <= args.calibrate
        est = statistics.median(per_op) if per_op else 1.0
        target = delay = None
        if calibrating:
            pass
        elif rng.random() < args.step_share:
            target = pick_target(rng, ops, expected)
        else:
            delay = rng.uniform(0, est * len(ops))
        events, killed, elapsed = run_victim(ports, ops, delay, target)
        if events and events[-1][0] == 'X':
            problems.append('round %d: the victim failed: %s'
                            % (rounds, events[-1][1]))
        point, done = kill_point(events, target)
        if not killed:
            if events and events[-1][0] == 'D' and target is None:
                per_op.append(elapsed / len(ops))
            point = 'not killed (%s)' % (
                'timing run' if calibrating else 'ended first')
        else:
            kills += 1
        where[point] += 1
        # Every operation that ended, and the interrupted one or not.
        applied = ops[:done]
        if done < len(ops) and rng.random() < 0.5:
            applied.append(ops[done])
        for op, arg in applied:
            if op == 'allocate':
                expected[arg.port_id] = arg
            else:
                expected.pop(arg, None)
        r = checker.reconcile(expected)
        leaked, double, wrong, operator = checker.check(expected)
        totals['leaked'] += len(leaked)
        totals['double-allocated'] += len(double)
        totals['wrong'] += len(wrong)
        totals['reconcile failed'] += len(r.failed)
        totals['reconcile created'] += len(r.created)
        totals['reconcile deleted'] += len(r.deleted)
        totals['reconcile held'] += len(r.held)
        totals['operator device lost'] += not operator
        if leaked or double or wrong or r.failed or not operator:
            problems.append('round %d (%s, ops %s): leaked %s, double %s, '
                            'wrong %s, failed %s, operator device %s' % (
                                rounds, point, [o for o, _ in ops], leaked,
                                double, wrong, r.failed,
                                'kept' if operator else 'LOST'))
    wall = time.monotonic() - t_start
    # Clean up: nothing expected, then the operator's device by hand.
    checker.reconcile({})
    checker.run(client.delete_device, OPERATOR_DEVICE)
    checker.close()

    for p in problems[:20]:
        print(p)
    print('seed %d, %d ports, %d rounds (%d timed to the end first), '
          '%d SIGKILLs inside the operations, %.0f s; median %.0f ms per '
          'operation' % (seed, args.ports, rounds, args.calibrate, kills,
                         wall, 1000 * statistics.median(per_op or [0])))
    print('leaked %d, double-allocated %d, wrong %d, reconcile failed %d, '
          'operator device lost %d' % (
              totals['leaked'], totals['double-allocated'], totals['wrong'],
              totals['reconcile failed'], totals['operator device lost']))
    print('reconcile made %d devices again, deleted %d, found %d held'
          % (totals['reconcile created'], totals['reconcile deleted'],
             totals['reconcile held']))
    print('kill points:')
    for point, n in where.most_common():
        print('  %4d  %s' % (n, point))
    result = {'seed': seed, 'rounds': rounds, 'kills': kills,
              'totals': dict(totals), 'kill_points': dict(where)}
    out_dir = os.environ.get('NOVA_VDPA_TESTBED_RESULTS')
    if out_dir:
        with open(os.path.join(out_dir, 'crash_safety.json'), 'w') as f:
            json.dump(result, f, indent=1)
    bad = (totals['leaked'] + totals['double-allocated'] + totals['wrong'] +
           totals['reconcile failed'] + totals['operator device lost'])
    sys.exit(1 if bad or problems or kills < args.kills else 0)


if __name__ == '__main__':
    main()

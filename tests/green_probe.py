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

"""A vdpa kernel call stuck in the kernel, in nova-compute's eventlet mode.

Run as a process of its own (``python -m tests.green_probe``): it patches
with eventlet before it imports nova_vdpa, as nova-compute does in eventlet
mode. A green thread ticks every 10 ms while the probe asks the kernel
for a device whose deletion is stuck behind a held chardev (the kernel's
vdpa lock is taken), twice, on a :class:`DeadlineWorker`. It prints one
JSON line: each call's outcome (the exception's class name, or
``returned``), its seconds and how many ticks the other green thread made
while it waited. With the fake kernel it then lets the holder go, waits
until no call is stuck and asks once more.

* ``--fake``: the unit tests' fake kernel, set up here;
* ``--device NAME``: the real kernel; the caller holds NAME's chardev and
  sent the deletion (tests/functional/test_kernel_deadlines.py);
* ``--native-wait``: wait the way a plain ``threading.Event`` does, which
  freezes every green thread: shows that the ticks can say so.
"""

import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from nova_vdpa import exception  # noqa: E402
from nova_vdpa.kernel import native  # noqa: E402
from nova_vdpa.kernel import netlink  # noqa: E402
from nova_vdpa.kernel import worker  # noqa: E402


def _stuck_fake_deletion(root):
    """The fake kernel with 'vd0' held and its deletion waiting."""
    from tests.unit import fake_kernel
    kernel = fake_kernel.FakeKernel(root=root)
    kernel.client().create_device('vd0', 'vdpasim_net')
    kernel.sysfs().bind('vd0')
    kernel.open_chardev('vd0')
    native.threading.Thread(target=kernel.client().delete_device,
                            args=('vd0',), daemon=True).start()
    while not kernel.vdpa_lock.locked():
        time.sleep(0.01)
    return kernel


def main():
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument('--fake', action='store_true')
    where.add_argument('--device')
    parser.add_argument('--timeout', type=float, default=1.0)
    parser.add_argument('--native-wait', action='store_true')
    args = parser.parse_args()
    if args.native_wait:
        native.wait = lambda event, timeout: event.wait(timeout)
    kernel = None
    if args.fake:
        kernel = _stuck_fake_deletion(tempfile.mkdtemp())
        factory, name = kernel.client, 'vd0'
    else:
        factory, name = netlink.VdpaClient, args.device

    ticks = [0]

    def ticker():
        while True:
            ticks[0] += 1
            eventlet.sleep(0.01)
    eventlet.spawn(ticker)
    eventlet.sleep(0)
    probe = worker.DeadlineWorker(factory, 'green-probe')

    def timed():
        before, t0 = ticks[0], time.monotonic()
        try:
            probe.call(lambda c: c.get_device(name), timeout=args.timeout,
                       device=name, what='device get')
            outcome = 'returned'
        except exception.NovaVdpaException as e:
            outcome = type(e).__name__
        return {'outcome': outcome,
                'seconds': round(time.monotonic() - t0, 3),
                'ticks': ticks[0] - before}

    found = {'green': native.green(), 'first': timed(), 'second': timed()}
    if kernel is not None:
        kernel.close_chardev('vd0')
        found['not stuck'] = worker.wait_not_stuck(30)
        kernel.client().create_device('vd0', 'vdpasim_net')
        found['after'] = timed()
    print(json.dumps(found), flush=True)


if __name__ == '__main__':
    main()

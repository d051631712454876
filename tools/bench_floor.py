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

"""The kernel floor of an allocation, here and behind a privsep daemon.

The floor is what the kernel must do for one port, with nothing checked:
pre-built netlink messages for DEV_NEW and DEV_DEL, and the three sysfs
writes of a binding to vhost_vdpa. tools/bench_kernel.py and
tools/bench_allocator.py run it in their own process
(:func:`create_and_bind_with`, :func:`delete_with`).

:func:`create_and_bind` and :func:`delete` run it in a privsep daemon, in
the two calls nova-compute makes (allocate on plug or spawn, release on
unplug): what no allocator that escalates through oslo.privsep can go
below. A context of its own, with the same capabilities as nova-vdpa's, so
the product's daemon exports nothing for the benchmarks. Never installed:
it lives under tools/, which the benchmarks put on the daemon's path.
"""

import os
import threading

from oslo_privsep import priv_context

from nova_vdpa import conf
from nova_vdpa.kernel import netlink

BUS = '/sys/bus/vdpa'

floor_pctxt = priv_context.PrivContext(
    __name__,
    cfg_section='nova_vdpa_bench_privileged',
    pypath=__name__ + '.floor_pctxt',
    capabilities=conf.PRIVILEGED_CAPABILITIES,
)

_local = threading.local()


def _socket():
    # One socket per daemon thread, as nova_vdpa.privsep.vdpa keeps.
    sock = getattr(_local, 'sock', None)
    if sock is None:
        sock = _local.sock = netlink.VdpaSocket()
        sock.bind()
    return sock


def _request(sock, cmd, attrs):
    m = netlink.vdpamsg()
    m['cmd'] = cmd
    m['version'] = 1
    m['attrs'] = attrs
    tuple(sock.nlm_request(m, sock.prid,
                           netlink.NLM_F_REQUEST | netlink.NLM_F_ACK))


def create_and_bind_with(sock, name, mgmtdev, mac=None, mtu=None):
    """DEV_NEW (with MAC and MTU if given), bind to vhost_vdpa. No checks.

    On ``sock``, a bound :class:`nova_vdpa.kernel.netlink.VdpaSocket`, in
    this process (tools/bench_kernel.py, tools/bench_allocator.py).
    """
    attrs = [('VDPA_ATTR_DEV_NAME', name),
             ('VDPA_ATTR_MGMTDEV_DEV_NAME', mgmtdev)]
    if mac is not None:
        attrs.append(('VDPA_ATTR_DEV_NET_CFG_MACADDR', mac))
    if mtu is not None:
        attrs.append(('VDPA_ATTR_DEV_NET_CFG_MTU', mtu))
    _request(sock, netlink.VDPA_CMD_DEV_NEW, attrs)
    dev = '%s/devices/%s/' % (BUS, name)
    for path, value in ((dev + 'driver_override', 'vhost_vdpa'),
                        (dev + 'driver/unbind', name),
                        (BUS + '/drivers_probe', name)):
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)


def delete_with(sock, name):
    """DEV_DEL on ``sock``, in this process. Nothing checked."""
    _request(sock, netlink.VDPA_CMD_DEV_DEL, [('VDPA_ATTR_DEV_NAME', name)])


@floor_pctxt.entrypoint
def create_and_bind(name, mgmtdev, mac, mtu):
    """:func:`create_and_bind_with`, in the daemon."""
    create_and_bind_with(_socket(), name, mgmtdev, mac, mtu)


@floor_pctxt.entrypoint
def delete(name):
    """:func:`delete_with`, in the daemon."""
    delete_with(_socket(), name)

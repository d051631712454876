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

"""The kernel floor behind a privsep daemon, for tools/bench_allocator.py.

What no allocator that escalates through oslo.privsep can go below: the
floor's own kernel operations (pre-built netlink messages, the three sysfs
writes of a binding, nothing checked), run in a privsep daemon in the two
calls nova-compute makes (allocate on plug or spawn, release on unplug).

A context of its own, with the same capabilities as nova-vdpa's, so the
product's daemon exports nothing for the benchmark. Never installed: it
lives under tools/ and the benchmark puts tools/ on the daemon's path.
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


def _msg(cmd, attrs):
    m = netlink.vdpamsg()
    m['cmd'] = cmd
    m['version'] = 1
    m['attrs'] = attrs
    return m


def _request(cmd, attrs):
    sock = _socket()
    tuple(sock.nlm_request(_msg(cmd, attrs), sock.prid,
                           netlink.NLM_F_REQUEST | netlink.NLM_F_ACK))


@floor_pctxt.entrypoint
def create_and_bind(name, mgmtdev, mac, mtu):
    """DEV_NEW with MAC and MTU, then bind to vhost_vdpa. Nothing checked."""
    _request(netlink.VDPA_CMD_DEV_NEW, [
        ('VDPA_ATTR_DEV_NAME', name),
        ('VDPA_ATTR_MGMTDEV_DEV_NAME', mgmtdev),
        ('VDPA_ATTR_DEV_NET_CFG_MACADDR', mac),
        ('VDPA_ATTR_DEV_NET_CFG_MTU', mtu)])
    dev = '%s/devices/%s/' % (BUS, name)
    for path, value in ((dev + 'driver_override', 'vhost_vdpa'),
                        (dev + 'driver/unbind', name),
                        (BUS + '/drivers_probe', name)):
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)


@floor_pctxt.entrypoint
def delete(name):
    """DEV_DEL. Nothing checked."""
    _request(netlink.VDPA_CMD_DEV_DEL, [('VDPA_ATTR_DEV_NAME', name)])

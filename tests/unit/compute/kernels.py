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

"""Fake kernels under LibvirtVdpaDriver, one per compute host.

Nova's functional tests run several nova-compute services in one process,
each with its own driver; each host must have its own kernel, or a port's
device (named after the port) would be shared between a migration's
source and destination. :class:`FakeHostKernels` gives every driver built
while ``CONF.host`` names a host that host's
:class:`~tests.unit.fake_kernel.FakeKernel`, and routes the privsep
entrypoints (run in-process, never in a daemon) to the kernel of the
allocator that called them. The route is process-wide, not per thread
(a deletion runs on a worker thread of its own), so allocator calls are
serialised across hosts: a test-only restriction.
"""

import functools
import os
import re
import threading

import fixtures
from oslo_config import cfg

from nova_vdpa import allocator as vdpa_allocator
from nova_vdpa.kernel import netlink
import nova_vdpa.privsep
from tests.unit import fake_kernel

CONF = cfg.CONF

_route = threading.RLock()
_current = {'kernel': None}


def _kernel() -> fake_kernel.FakeKernel:
    kernel = _current['kernel']
    if kernel is None:
        raise AssertionError('a privsep entrypoint ran outside an allocator '
                             'call: no fake kernel to route it to')
    return kernel


class _RoutingSocket:
    """A vdpa socket that speaks to the calling allocator's kernel."""

    def __init__(self):
        self.closed = False

    @property
    def prid(self):
        return _kernel().family_id

    def bind(self, groups=0, **kwarg):
        _kernel().socket().bind(groups, **kwarg)

    def close(self):
        self.closed = True

    def nlm_request(self, msg, msg_type, msg_flags):
        return _kernel().socket().nlm_request(msg, msg_type, msg_flags)


def _routed(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with _route:
            saved = _current['kernel']
            _current['kernel'] = self.fake_kernel
            try:
                return method(self, *args, **kwargs)
            finally:
                _current['kernel'] = saved
    return wrapper


class _HostAllocator(vdpa_allocator.Allocator):
    """The real allocator; privsep calls made inside it reach its kernel."""

    def __init__(self, kernel, **kwargs):
        self.fake_kernel = kernel
        super().__init__(client_factory=kernel.client, sysfs=kernel.sysfs(),
                         **kwargs)

    allocate = _routed(vdpa_allocator.Allocator.allocate)
    release = _routed(vdpa_allocator.Allocator.release)
    vhost_backend = _routed(vdpa_allocator.Allocator.vhost_backend)


def _no_daemon(*args, **kwargs):
    raise AssertionError('tests must never start a privsep daemon')


class FakeHostKernels(fixtures.Fixture):
    """A fake kernel per ``CONF.host`` below every LibvirtVdpaDriver.

    :param mgmtdevs: ``hostname -> callable returning FakeMgmtdev list``;
        a host not listed gets ``default``.
    :param default: management devices for other hosts (a callable).
    """

    def __init__(self, mgmtdevs=None, default=None):
        super().__init__()
        self.mgmtdevs = mgmtdevs or {}
        self.default = default or (lambda: [fake_kernel.vdpasim_net()])
        self.kernels = {}

    def _setUp(self):
        self.root = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_privsep.priv_context.PrivContext.start', _no_daemon))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.vdpa._client_factory',
            lambda: netlink.VdpaClient(socket_factory=_RoutingSocket)))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.vdpa._sysfs_factory',
            lambda: _kernel().sysfs()))
        ctx = nova_vdpa.privsep.vdpa_pctxt
        self.addCleanup(ctx.set_client_mode, ctx.client_mode)
        ctx.set_client_mode(False)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.compute.driver.allocator_factory', self._allocator))
        # The fake kernels' vhost-vdpa nodes live in <root>/<host>/dev.
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.libvirt.designer.CHARDEV_RE',
            re.compile(re.escape(self.root)
                       + r'/[^/]+/dev/vhost-vdpa-[0-9]+')))

    def kernel(self, host=None):
        """The fake kernel of ``host`` (default: ``CONF.host``)."""
        host = host or CONF.host
        if host not in self.kernels:
            root = '%s/%s' % (self.root, host)
            make = self.mgmtdevs.get(host, self.default)
            kernel = fake_kernel.FakeKernel(root, mgmtdevs=make())
            # The kernel's /sys/bus/pci/devices/<VF> link to each VF's
            # device, under which mlx5 puts the VF's vDPA devices.
            pci = os.path.join(kernel.sys, 'bus', 'pci', 'devices')
            os.makedirs(pci)
            for m in kernel.mgmtdevs:
                if m.bus == 'pci':
                    vf_dir = os.path.join(kernel.sys, 'devices', 'pci0000:00',
                                          m.name)
                    os.makedirs(vf_dir, exist_ok=True)
                    os.symlink(vf_dir, os.path.join(pci, m.name))
            self.kernels[host] = kernel
        return self.kernels[host]

    def _allocator(self, **kwargs):
        allocator = _HostAllocator(self.kernel(), **kwargs)
        self.addCleanup(allocator.close)
        return allocator

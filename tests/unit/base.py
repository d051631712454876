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

"""Shared bases and helpers of the unit tests.

Every unit test derives from :class:`TestCase`, oslotest's base class, so
that ``OS_TEST_TIMEOUT`` and the ``OS_*_CAPTURE`` settings tox sets take
effect. Test modules import their bases and helpers from here, never from
one another.
"""

import fixtures
from lxml import etree
from nova import objects
from oslo_config import cfg
from oslo_config import fixture as cfg_fixture
from oslotest import base

from nova_vdpa import conf as vdpa_conf
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import worker
import nova_vdpa.privsep
from tests.unit import fake_kernel


class TestCase(base.BaseTestCase):
    """oslotest's base: timeout, output and log capture from tox's env.

    A kernel call left stuck by a test (the kernel workers' state is one
    per process) must have returned when the test ends, or the next test
    of the process would fail fast for it.
    """

    def setUp(self):
        super().setUp()
        self.addCleanup(self._no_call_stuck)

    def _no_call_stuck(self):
        if not worker.wait_not_stuck(fake_kernel.BLOCK_LIMIT + 5):
            raise AssertionError('a kernel call of the test is still stuck: '
                                 '%s' % (worker.stuck(),))


def _no_daemon(*args, **kwargs):
    raise AssertionError('unit tests must never start a privsep daemon')


def privsep_in_process(test, kernel, management_devices=('vdpasim_net',)):
    """Run nova-vdpa's privsep entrypoints in-process against ``kernel``.

    Starting a daemon fails the test. The entrypoints read their own
    configuration, not the global one (a Config fixture on that would also
    reset the privsep context's defaults).

    :param management_devices: the daemon's ``management_devices`` (an
        empty list allows none).
    :returns: the Config fixture the entrypoints read, with
        ``management_devices`` set.
    """
    test.useFixture(fixtures.MonkeyPatch(
        'oslo_privsep.priv_context.PrivContext.start', _no_daemon))
    test.useFixture(fixtures.MonkeyPatch(
        'nova_vdpa.privsep.vdpa._client_factory', kernel.client))
    test.useFixture(fixtures.MonkeyPatch(
        'nova_vdpa.privsep.vdpa._sysfs_factory', kernel.sysfs))
    ctx = nova_vdpa.privsep.vdpa_pctxt
    test.addCleanup(ctx.set_client_mode, ctx.client_mode)
    ctx.set_client_mode(False)
    conf = test.useFixture(cfg_fixture.Config(cfg.ConfigOpts()))
    test.useFixture(fixtures.MonkeyPatch('nova_vdpa.privsep.vdpa._conf',
                                         conf.conf))
    vdpa_conf.register_opts(conf.conf)
    conf.config(group=vdpa_conf.vdpa_group.name,
                management_devices=list(management_devices))
    return conf


class KernelTestCase(TestCase):
    """A fake kernel (a fixture), a client and a sysfs view of it."""

    #: management devices of the fake kernel (None: vdpasim_net)
    mgmtdevs: list | None = None

    def setUp(self):
        super().setUp()
        self.kernel = self.useFixture(
            fake_kernel.FakeKernel(mgmtdevs=self.mgmtdevs))
        self.client = self.kernel.client()
        self.sysfs = self.kernel.sysfs()

    def iproute2_add(self, name):
        """Create ``name`` on vdpasim_net as ``vdpa dev add`` would.

        No check of ours on the way: iproute2 sends names our creation
        rule forbids.
        """
        list(self.client._request(
            netlink.VDPA_CMD_DEV_NEW,
            [('VDPA_ATTR_DEV_NAME', name),
             ('VDPA_ATTR_MGMTDEV_DEV_NAME', 'vdpasim_net')], False,
            dict(device=name, mgmtdev='vdpasim_net', attribute='-')))


class NovaObjectsTestCase(TestCase):
    """Nova's versioned objects registered (Flavor, ImageMeta)."""

    def setUp(self):
        super().setUp()
        objects.register_all()


def xml_tree(node):
    """An element as (tag, attributes, children), order of children kept."""
    if isinstance(node, str):
        node = etree.fromstring(node)
    return (node.tag, dict(node.attrib), [xml_tree(c) for c in node])

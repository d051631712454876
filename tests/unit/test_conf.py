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

import json
import os
import subprocess
import sys
import textwrap

import fixtures
from oslo_config import cfg
from oslo_config import fixture as cfg_fixture
from oslo_privsep import capabilities as caps
from oslo_privsep import priv_context

from nova_vdpa import conf
from tests.unit import base


def _fresh_interpreter(code):
    """Run ``code`` in a new interpreter: a clean ``cfg.CONF``."""
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise AssertionError(proc.stderr)
    return json.loads(proc.stdout)


class TestConf(base.TestCase):

    def test_import_registers_nothing(self):
        # Another test may have imported nova_vdpa.privsep (whose context
        # registers its group, see below) into this process already.
        groups = _fresh_interpreter('''
            import json
            from oslo_config import cfg
            before = set(cfg.CONF)
            import nova_vdpa
            import nova_vdpa.conf
            print(json.dumps(sorted(set(cfg.CONF) - before)))
        ''')
        self.assertEqual([], groups)

    def test_register_opts(self):
        fixture = self.useFixture(cfg_fixture.Config(cfg.ConfigOpts()))
        conf.register_opts(fixture.conf)
        self.assertEqual([], fixture.conf.nova_vdpa.management_devices)
        self.assertEqual(10.0, fixture.conf.nova_vdpa.delete_timeout)
        fixture.config(group='nova_vdpa',
                       management_devices=['pci/0000:08:00.2', 'vdpasim_net'],
                       delete_timeout=2.5)
        self.assertEqual(['pci/0000:08:00.2', 'vdpasim_net'],
                         fixture.conf.nova_vdpa.management_devices)
        self.assertEqual(2.5, fixture.conf.nova_vdpa.delete_timeout)
        self.assertNotIn('vdpa', fixture.conf)

    def test_delete_timeout_bounds(self):
        fixture = self.useFixture(cfg_fixture.Config(cfg.ConfigOpts()))
        conf.register_opts(fixture.conf)
        for bad in (0, 0.5, 301, -1):
            self.assertRaises(ValueError, fixture.config, group='nova_vdpa',
                              delete_timeout=bad)
        fixture.config(group='nova_vdpa', delete_timeout=300)
        self.assertEqual(300, fixture.conf.nova_vdpa.delete_timeout)

    def test_delete_timeout_bad_value_in_file(self):
        # What an operator meets: a value out of bounds in nova.conf fails
        # when read, naming the option.
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'nova.conf')
        with open(path, 'w') as f:
            f.write('[nova_vdpa]\ndelete_timeout = 600\n')
        opts = cfg.ConfigOpts()
        conf.register_opts(opts)
        opts(['--config-file', path])
        e = self.assertRaises(cfg.ConfigFileValueError,
                              getattr, opts.nova_vdpa, 'delete_timeout')
        self.assertIn('delete_timeout', str(e))

    def test_list_opts(self):
        groups = dict((g.name, opts) for g, opts in conf.list_opts())
        self.assertEqual({'nova_vdpa', 'nova_vdpa_privileged'}, set(groups))
        self.assertEqual({'management_devices', 'simulated_vfs',
                          'delete_timeout', 'offload_checks',
                          'read_timeout', 'ovsdb_timeout',
                          'live_migration_without_unplug',
                          'max_devices_per_simulator', 'ovn_rundir'},
                         {o.name for o in groups['nova_vdpa']})
        for opt in groups['nova_vdpa']:
            self.assertIn('Possible values', opt.help)
        # the generated sample shows the marker first
        simulated, = [o for o in groups['nova_vdpa']
                      if o.name == 'simulated_vfs']
        self.assertTrue(simulated.help.strip().startswith('TEST ONLY'))
        self.assertEqual({o.name for o in priv_context.OPTS},
                         {o.name for o in groups['nova_vdpa_privileged']})

    def test_privileged_defaults_are_the_context_defaults(self):
        # What oslo.privsep registers for our context is what the sample
        # shows; read in a fresh interpreter, where importing
        # nova_vdpa.privsep is the only registration.
        registered = _fresh_interpreter('''
            import json
            from oslo_config import cfg
            before = set(cfg.CONF)
            import nova_vdpa.privsep
            groups = sorted(set(cfg.CONF) - before)
            cfg.CONF([], default_config_files=[])
            group = cfg.CONF.nova_vdpa_privileged
            print(json.dumps({'capabilities': group.capabilities,
                              'logger_name': group.logger_name,
                              'groups': groups}))
        ''')
        self.assertEqual(['nova_vdpa_privileged'], registered['groups'])
        listed = {o.name: o for g, opts in conf.list_opts()
                  if g.name == 'nova_vdpa_privileged' for o in opts}
        self.assertEqual([caps.CAP_NET_ADMIN], registered['capabilities'])
        self.assertEqual(['CAP_NET_ADMIN'], listed['capabilities'].default)
        self.assertEqual(registered['capabilities'],
                         listed['capabilities'].type(
                             listed['capabilities'].default))
        self.assertEqual(registered['logger_name'],
                         listed['logger_name'].default)

    def test_list_opts_does_not_change_oslo_privsep(self):
        before = [o.default for o in priv_context.OPTS]
        conf.list_opts()
        self.assertEqual(before, [o.default for o in priv_context.OPTS])


class TestAllowListAndLimits(base.TestCase):

    def test_max_devices_per_simulator(self):
        fixture = self.useFixture(cfg_fixture.Config(cfg.ConfigOpts()))
        conf.register_opts(fixture.conf)
        self.assertEqual(32, fixture.conf.nova_vdpa.max_devices_per_simulator)
        for bad in (0, -1, 1025):
            self.assertRaises(ValueError, fixture.config, group='nova_vdpa',
                              max_devices_per_simulator=bad)

    def test_device_limit(self):
        self.assertEqual(1, conf.device_limit('pci/0000:08:00.2', 32))
        self.assertEqual(1, conf.device_limit('auxiliary/mlx5_core.sf.3',
                                              32))
        self.assertEqual(32, conf.device_limit('vdpasim_net', 32))

    def test_refusal_names_the_option(self):
        self.assertIn('[nova_vdpa] management_devices is empty',
                      conf.not_allowed_reason([]))
        self.assertIn('not in [nova_vdpa] management_devices (a, b)',
                      conf.not_allowed_reason(['b', 'a']))

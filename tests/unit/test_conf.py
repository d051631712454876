import importlib

from oslo_config import cfg
from oslo_config import fixture as cfg_fixture

from nova_vdpa import conf
from tests.unit import base


class TestConf(base.TestCase):

    def test_import_registers_nothing(self):
        importlib.reload(conf)
        self.assertNotIn('vdpa', cfg.CONF)

    def test_register_opts(self):
        fixture = self.useFixture(cfg_fixture.Config(cfg.ConfigOpts()))
        conf.register_opts(fixture.conf)
        self.assertEqual([], fixture.conf.vdpa.management_devices)
        fixture.config(group='vdpa',
                       management_devices=['pci/0000:08:00.2', 'vdpasim_net'])
        self.assertEqual(['pci/0000:08:00.2', 'vdpasim_net'],
                         fixture.conf.vdpa.management_devices)

    def test_list_opts_is_the_vdpa_group(self):
        [(group, opts)] = conf.list_opts()
        self.assertEqual('vdpa', group.name)
        self.assertEqual(
            {'management_devices', 'simulated_vfs', 'offload_checks'},
            {o.name for o in opts})
        for opt in opts:
            self.assertIn('Possible values', opt.help)

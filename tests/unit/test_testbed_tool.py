"""Pure parts of tools/testbed.py (the bed itself is proven functionally)."""

import importlib.util
import pathlib

import testtools

_PATH = pathlib.Path(__file__).resolve().parents[2] / 'tools' / 'testbed.py'
_spec = importlib.util.spec_from_file_location('testbed', _PATH)
testbed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(testbed)


class TestTestbedTool(testtools.TestCase):

    def test_kernel_package_set_for_a_debian_version(self):
        abi, pkgs = testbed.kernel_packages('6.12.117-1~deb12u1')
        self.assertEqual('6.12.117+deb12', abi)
        self.assertEqual({
            'image': 'linux-image-6.12.117+deb12-amd64',
            'headers': 'linux-headers-6.12.117+deb12-amd64',
            'common': 'linux-headers-6.12.117+deb12-common',
            'kbuild': 'linux-kbuild-6.12.117+deb12',
            'source': 'linux-source-6.12',
        }, pkgs)

    def test_unknown_service_is_refused(self):
        e = self.assertRaises(testbed.BedError, testbed._services,
                              'libvirt,dpdk')
        self.assertIn('dpdk', str(e))
        self.assertEqual(['libvirt', 'ovs'], testbed._services('libvirt,ovs'))

    def test_virtio_vdpa_loads_before_vhost_vdpa(self):
        mods = testbed.GUEST_MODULES
        self.assertLess(mods.index('virtio_vdpa'), mods.index('vhost_vdpa'))

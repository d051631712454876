"""Pure parts of tools/testbed.py (the bed itself is proven functionally)."""

import importlib.util
import pathlib

import fixtures

from tests.unit import base

_PATH = pathlib.Path(__file__).resolve().parents[2] / 'tools' / 'testbed.py'
_spec = importlib.util.spec_from_file_location('testbed', _PATH)
testbed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(testbed)


class TestTestbedTool(base.TestCase):

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

    def _qemu_opts(self, argv):
        opts = [a for a in argv if a.startswith('--qemu-opts=')]
        self.assertEqual(1, len(opts))
        return opts[0].split('=', 1)[1].split()

    def test_tcg_runs_every_vcpu_on_one_thread(self):
        info = {'vmlinuz': '/k/vmlinuz', 'kvm': False}
        argv = testbed.vng_argv(info, pathlib.Path('/r'), ['true'], '3G', 2)
        self.assertIn('--disable-kvm', argv)
        opts = self._qemu_opts(argv)
        self.assertEqual('tcg,thread=single', opts[opts.index('-accel') + 1])
        self.assertEqual('2', argv[argv.index('-p') + 1])

    def test_kvm_keeps_qemu_defaults(self):
        info = {'vmlinuz': '/k/vmlinuz', 'kvm': True}
        argv = testbed.vng_argv(info, pathlib.Path('/r'), ['true'], '3G', 2)
        self.assertNotIn('--disable-kvm', argv)
        self.assertNotIn('-accel', self._qemu_opts(argv))

    def test_kernel_console_goes_to_the_run_folder(self):
        info = {'vmlinuz': '/k/vmlinuz', 'kvm': False}
        argv = testbed.vng_argv(info, pathlib.Path('/r'), ['true'], '3G', 2)
        self.assertIn('console=hvc0',
                      argv[argv.index('--append') + 1].split())
        opts = self._qemu_opts(argv)
        chardev = opts[opts.index('-chardev') + 1].split(',')
        self.assertIn('path=/r/console.log', chardev)
        self.assertIn('virtconsole,chardev=%s,bus=nvconsolebus.0'
                      % chardev[1].split('=')[1], opts)

    def test_console_tail(self):
        d = self.useFixture(fixtures.TempDir()).path
        path = pathlib.Path(d) / 'console.log'
        self.assertIn('no console log', testbed.console_tail(path))
        path.write_text(''.join('line %d\n' % i for i in range(100)))
        tail = testbed.console_tail(path, lines=3)
        self.assertEqual('line 97\nline 98\nline 99', tail)
        path.write_text('')
        self.assertEqual('(empty)', testbed.console_tail(path))

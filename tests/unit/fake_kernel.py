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

"""A fake Linux vdpa kernel: generic netlink family plus sysfs, /dev, /proc.

It enforces the rules the real kernel enforces, each of which a functional
test (tests/functional/test_kernel_*.py) checks against the real kernel:

* DEV_NEW/DEV_DEL/VSTATS_GET need CAP_NET_ADMIN (EPERM);
* an unknown management device is ENODEV, and so is an unknown device;
  a management device handle matches only with its bus when it has one;
* an attribute outside the driver's config mask is EOPNOTSUPP (max_vqp on
  vdpasim_net), a duplicate name EEXIST, MTU < 68 ERANGE, max_vqp 0
  EINVAL, an mlx5-like management device takes one device (ENOSPC);
* replies are tagged with the NEW command numbers;
* vendor queue statistics exist once a driver negotiated features (EAGAIN
  on vhost_vdpa before a VMM attaches), with vdpasim_net's counter names
  per queue (rx, tx, control);
* vdpa_sim's ``use_va`` module parameter reads ``Y`` or ``N`` under
  ``/sys/module/vdpa_sim/parameters``;
* a new device autoprobes to the bus driver that registered first;
  driver_override + drivers_probe, unbind and bind behave as on the bus;
* a vhost-vdpa node answers the backend ioctls of ``kernel/vhost.py``
  with its management device's ``backend`` (ENOTTY for others);
* a vhost-vdpa node admits one opener (EBUSY), and deleting a device whose
  node is open, or unbinding it from vhost_vdpa, blocks until it is closed;
* a netlink request runs under the kernel's vdpa lock (``vdpa_dev_lock``,
  held by DEV_NEW and DEV_DEL for writing, by the GETs for reading; taken
  whole here): while a deletion waits for a holder, every other request
  waits too (tests/functional/test_kernel_deadlines.py shows it on 6.12);
* ``bind``, ``unbind`` and ``drivers_probe`` find a device by name as
  ``sysfs_streq`` does: one trailing newline on either side is ignored;
* device names are not checked: any name iproute2 sends is created;
* without the family (modules unloaded) binding the socket is ENOENT and
  ``/sys/bus/vdpa`` is gone.

It is a ``fixtures.Fixture``: ``useFixture(FakeKernel())`` builds the tree
in a temporary folder and, at cleanup, closes the clients it made and
releases every held chardev (so no thread stays blocked). Built with a
``root``, it is usable at once without the fixture protocol.

Messages go through pyroute2's real encoder and decoder both ways.
"""

import dataclasses
import errno
import os
import struct

import fixtures
from pyroute2.netlink.exceptions import NetlinkError

from nova_vdpa.kernel import model
from nova_vdpa.kernel import native
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs
from nova_vdpa.kernel import vhost

FAMILY_ID = 0x1c
BLOCK_LIMIT = 30  # seconds a blocked fake operation waits before failing

NET_ATTRS = {'VDPA_ATTR_DEV_NET_CFG_MACADDR', 'VDPA_ATTR_DEV_NET_CFG_MTU',
             'VDPA_ATTR_DEV_NET_CFG_MAX_VQP', 'VDPA_ATTR_DEV_FEATURES'}


@dataclasses.dataclass
class FakeMgmtdev:
    bus: str | None
    name: str
    config_attrs: frozenset
    max_vqs: int
    supported_features: int
    max_devices: int | None = None
    #: queue index -> vendor statistic names (None: no vendor stats)
    vendor_stats: object = None
    #: what its devices' vhost-vdpa nodes answer: (VHOST_BACKEND_F_* bits,
    #: virtqueue groups, address spaces); vdpa_sim_net's on 6.12 (IOTLB_MSG_V2,
    #: IOTLB_BATCH, IOTLB_ASID, SUSPEND, RESUME, ENABLE_AFTER_DRIVER_OK,
    #: IOTLB_PERSIST; 2 groups, 2 address spaces), used for mlx5 VFs too
    backend: tuple = (0x17e, 2, 2)
    #: the largest MTU the NIC takes (None: any). mlx5_vdpa_dev_add sets
    #: a given MTU on the function's vport and fails with EINVAL when the
    #: firmware refuses it (above the port's maximum); the simulators
    #: take any MTU the netlink policy admits.
    max_mtu: int | None = None

    @property
    def handle(self):
        return model.join_mgmtdev(self.bus, self.name)


def vdpasim_net():
    # vdpa_sim_net: mac, mtu and features, no max_vqp; no device limit.
    return FakeMgmtdev(None, 'vdpasim_net', frozenset({
        'VDPA_ATTR_DEV_NET_CFG_MACADDR', 'VDPA_ATTR_DEV_NET_CFG_MTU',
        'VDPA_ATTR_DEV_FEATURES'}), 3, 0x308830028,
        vendor_stats=lambda i: (
            ('rx packets', 'rx bytes', 'rx errors', 'rx overruns',
             'rx drops'), ('tx packets', 'tx bytes', 'tx errors',
                           'tx drops'),
            ('cvq requests', 'cvq successes', 'cvq errors'))[i])


def mlx5_vf(address='0000:08:00.2'):
    return FakeMgmtdev('pci', address, frozenset(NET_ATTRS), 16,
                       0x3_0f0f_3fef | (1 << 22), max_devices=1,
                       vendor_stats=lambda i: ('received_desc',
                                               'completed_desc'))


@dataclasses.dataclass
class FakeDevice:
    name: str
    mgmtdev: FakeMgmtdev
    mac: str
    mtu: int
    max_vqp: int
    features: int
    path: str
    driver: str | None = None
    override: str | None = None
    vhost_index: int | None = None
    holder: int | None = None


def sysfs_streq(a, b):
    """The kernel's sysfs_streq: equal, but for one trailing newline."""
    return a == b or a + '\n' == b or a == b + '\n'


class FakeKernel(fixtures.Fixture):
    """State of the fake kernel, its sysfs tree living under ``root``."""

    def __init__(self, root=None, mgmtdevs=None,
                 drivers=(sysfs.VIRTIO_VDPA, sysfs.VHOST_VDPA),
                 use_va=False):
        super().__init__()
        self.root = root
        #: vdpa_sim's use_va module parameter (the bed loads it with 0)
        self.use_va = use_va
        self.loaded = True
        # genetlink gives the family a new id each time vdpa is loaded.
        self.family_id = FAMILY_ID
        self.cap_net_admin = True
        self.drivers = list(drivers)  # registration order
        self.mgmtdevs = list(mgmtdevs or [vdpasim_net()])
        self.devices = {}
        # Taken by the kernel workers' OS threads, as in nova-compute's
        # eventlet mode (nova_vdpa.kernel.native).
        self.cond = native.threading.Condition()
        #: the kernel's vdpa_dev_lock, around every request
        self.vdpa_lock = native.threading.Lock()
        self._clients = []
        #: replies as bytes, by (cmd, family id, attributes)
        self.wire_cache = {}
        if root is not None:
            self._build()

    def _setUp(self):
        if self.root is None:
            self.root = self.useFixture(fixtures.TempDir()).path
            self._build()
        self.addCleanup(self._release)

    def _build(self):
        root = self.root
        self.sys = os.path.join(root, 'sys')
        self.dev = os.path.join(root, 'dev')
        self.proc = os.path.join(root, 'proc')
        self.bus = os.path.join(self.sys, 'bus', 'vdpa')
        for d in (self.dev, self.proc, os.path.join(self.bus, 'devices'),
                  os.path.join(self.sys, 'devices', 'pci0000:00')):
            os.makedirs(d, exist_ok=True)
        for drv in self.drivers:
            d = os.path.join(self.bus, 'drivers', drv)
            os.makedirs(d)
            for f in ('bind', 'unbind'):
                open(os.path.join(d, f), 'w').close()
        params = os.path.join(self.sys, sysfs.VDPA_SIM_USE_VA)
        os.makedirs(os.path.dirname(params))
        with open(params, 'w') as fh:
            fh.write('Y\n' if self.use_va else 'N\n')
        for f, v in (('drivers_probe', ''), ('drivers_autoprobe', '1\n')):
            with open(os.path.join(self.bus, f), 'w') as fh:
                fh.write(v)

    def _release(self):
        """Let every blocked operation end; close the clients we made."""
        with self.cond:
            for d in self.devices.values():
                d.holder = None
            self.cond.notify_all()
        for client in self._clients:
            client.close()

    def set_use_va(self, use_va):
        """vdpa_sim loaded again with another ``use_va`` parameter."""
        self.use_va = use_va
        with open(os.path.join(self.sys, sysfs.VDPA_SIM_USE_VA), 'w') as fh:
            fh.write('Y\n' if use_va else 'N\n')

    def unload(self):
        """``modprobe -r``: the family and /sys/bus/vdpa disappear."""
        self.loaded = False
        os.rename(self.bus, self.bus + '.unloaded')

    def load(self):
        """``modprobe`` again: the family comes back with a new id."""
        os.rename(self.bus + '.unloaded', self.bus)
        self.loaded = True
        self.family_id += 1

    # --------------------------------------------------------------- access
    def socket(self):
        return FakeVdpaSocket(self)

    def client(self):
        client = netlink.VdpaClient(socket_factory=self.socket)
        self._clients.append(client)
        return client

    def sysfs(self):
        return FakeSysfs(self)

    def by_sysfs_name(self, value):
        """The device a name written to bind/unbind/drivers_probe finds."""
        for d in self.devices.values():
            if sysfs_streq(d.name, value):
                return d
        raise OSError(errno.ENODEV, 'no such device')

    # ------------------------------------------------------------- netlink
    def handle(self, cmd, attrs, dump):
        """Run one request under the vdpa lock; see :meth:`_handle`."""
        with self.vdpa_lock:
            return self._handle(cmd, attrs, dump)

    def _handle(self, cmd, attrs, dump):
        """Run one request; return reply attribute lists or raise.

        A dump's replies are built one by one as the socket encodes them
        (the kernel fills a dump message by message too), from the devices
        there were when the request came: building every reply first made
        the fake's own garbage, not the client, what a dump of thousands
        cost.
        """
        if cmd == netlink.VDPA_CMD_MGMTDEV_GET:
            if dump:
                return ((netlink.VDPA_CMD_MGMTDEV_NEW, self._mgmt_attrs(m))
                        for m in list(self.mgmtdevs))
            return [(netlink.VDPA_CMD_MGMTDEV_NEW,
                     self._mgmt_attrs(self._find_mgmt(attrs)))]
        if cmd in (netlink.VDPA_CMD_DEV_GET,
                   netlink.VDPA_CMD_DEV_CONFIG_GET):
            tag = (netlink.VDPA_CMD_DEV_NEW
                   if cmd == netlink.VDPA_CMD_DEV_GET else cmd)
            fill = (self._dev_attrs if cmd == netlink.VDPA_CMD_DEV_GET
                    else self._config_attrs)
            if dump:
                return ((tag, fill(d)) for d in list(self.devices.values()))
            return [(tag, fill(self._find_dev(attrs)))]
        if cmd == netlink.VDPA_CMD_DEV_NEW:
            self._need_admin()
            self._dev_new(attrs)
            return []
        if cmd == netlink.VDPA_CMD_DEV_DEL:
            self._need_admin()
            self._dev_del(self._find_dev(attrs))
            return []
        if cmd == netlink.VDPA_CMD_DEV_VSTATS_GET:
            self._need_admin()
            return [(cmd, self._vstats(attrs))]
        raise NetlinkError(errno.EOPNOTSUPP)

    def _need_admin(self):
        if not self.cap_net_admin:
            raise NetlinkError(errno.EPERM)

    @staticmethod
    def _mgmt_attrs(m):
        out = []
        if m.bus:
            out.append(('VDPA_ATTR_MGMTDEV_BUS_NAME', m.bus))
        out += [('VDPA_ATTR_MGMTDEV_DEV_NAME', m.name),
                ('VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES', 1 << 1),
                ('VDPA_ATTR_DEV_MGMTDEV_MAX_VQS', m.max_vqs),
                ('VDPA_ATTR_DEV_SUPPORTED_FEATURES', m.supported_features)]
        return out

    def _find_mgmt(self, attrs):
        if 'VDPA_ATTR_MGMTDEV_DEV_NAME' not in attrs:
            raise NetlinkError(errno.EINVAL)
        bus = attrs.get('VDPA_ATTR_MGMTDEV_BUS_NAME')
        for m in self.mgmtdevs:
            # A bus must be given exactly when the device has one.
            if (m.bus or None) == (bus or None) and \
                    m.name == attrs['VDPA_ATTR_MGMTDEV_DEV_NAME']:
                return m
        raise NetlinkError(errno.ENODEV,
                           'vdpa: Fail to find the specified mgmt device')

    def _find_dev(self, attrs):
        name = attrs.get('VDPA_ATTR_DEV_NAME')
        if name is None:
            raise NetlinkError(errno.EINVAL)
        if name not in self.devices:
            raise NetlinkError(errno.ENODEV, 'vdpa: device not found')
        return self.devices[name]

    @staticmethod
    def _dev_attrs(d):
        out = FakeKernel._mgmt_attrs(d.mgmtdev)[:-3]
        return out + [('VDPA_ATTR_DEV_NAME', d.name),
                      ('VDPA_ATTR_DEV_ID', model.VIRTIO_ID_NET),
                      ('VDPA_ATTR_DEV_VENDOR_ID', 0),
                      ('VDPA_ATTR_DEV_MAX_VQS',
                       2 * d.max_vqp + 1 if d.max_vqp > 1
                       else d.mgmtdev.max_vqs),
                      ('VDPA_ATTR_DEV_MAX_VQ_SIZE', 256),
                      ('VDPA_ATTR_DEV_MIN_VQ_SIZE', 1)]

    def _negotiated(self, d):
        # virtio_vdpa drives the device at once; vhost_vdpa waits for a VMM.
        if d.driver == sysfs.VIRTIO_VDPA:
            return d.features & ~(1 << 27)
        return None

    def _config_attrs(self, d):
        out = [('VDPA_ATTR_DEV_NAME', d.name),
               ('VDPA_ATTR_DEV_ID', model.VIRTIO_ID_NET),
               ('VDPA_ATTR_DEV_FEATURES', d.features),
               ('VDPA_ATTR_DEV_NET_CFG_MTU', d.mtu),
               ('VDPA_ATTR_DEV_NET_CFG_MACADDR', d.mac),
               ('VDPA_ATTR_DEV_NET_STATUS', model.VIRTIO_NET_S_LINK_UP)]
        if d.features & model.F_MQ:
            out.append(('VDPA_ATTR_DEV_NET_CFG_MAX_VQP', d.max_vqp))
        negotiated = self._negotiated(d)
        if negotiated is not None:
            out.append(('VDPA_ATTR_DEV_NEGOTIATED_FEATURES', negotiated))
        return out

    def _vstats(self, attrs):
        if 'VDPA_ATTR_DEV_QUEUE_INDEX' not in attrs:
            raise NetlinkError(errno.EINVAL)
        d = self._find_dev(attrs)
        if d.mgmtdev.vendor_stats is None:
            raise NetlinkError(errno.EOPNOTSUPP)
        negotiated = self._negotiated(d)
        if negotiated is None:
            raise NetlinkError(errno.EAGAIN,
                               'vdpa: feature negotiation not complete')
        index = attrs['VDPA_ATTR_DEV_QUEUE_INDEX']
        try:
            names = d.mgmtdev.vendor_stats(index)
        except IndexError:
            # vdpasim_net_get_stats: a queue it does not have is EINVAL.
            raise NetlinkError(errno.EINVAL)
        out = [('VDPA_ATTR_DEV_NAME', d.name),
               ('VDPA_ATTR_DEV_ID', model.VIRTIO_ID_NET),
               ('VDPA_ATTR_DEV_NET_CFG_MAX_VQP', d.max_vqp),
               ('VDPA_ATTR_DEV_NEGOTIATED_FEATURES', negotiated),
               ('VDPA_ATTR_DEV_QUEUE_INDEX', index)]
        for n, stat in enumerate(names):
            out += [('VDPA_ATTR_DEV_VENDOR_ATTR_NAME', stat),
                    ('VDPA_ATTR_DEV_VENDOR_ATTR_VALUE', 7 - n)]
        return out

    def _dev_new(self, attrs):
        name = attrs.get('VDPA_ATTR_DEV_NAME')
        if name is None:
            raise NetlinkError(errno.EINVAL)
        mtu = attrs.get('VDPA_ATTR_DEV_NET_CFG_MTU')
        if mtu is not None and mtu < 68:
            raise NetlinkError(errno.ERANGE, 'integer out of range')
        if attrs.get('VDPA_ATTR_DEV_NET_CFG_MAX_VQP', 1) == 0:
            raise NetlinkError(errno.EINVAL,
                               'vdpa: At least one pair of VQs is required')
        m = self._find_mgmt(attrs)
        given = NET_ATTRS & set(attrs)
        if not given <= m.config_attrs:
            raise NetlinkError(errno.EOPNOTSUPP, 'vdpa: All provided '
                               'attributes are not supported')
        if name in self.devices:
            raise NetlinkError(errno.EEXIST)
        if m.max_devices is not None and m.max_devices <= sum(
                1 for d in self.devices.values() if d.mgmtdev is m):
            raise NetlinkError(errno.ENOSPC)
        features = attrs.get('VDPA_ATTR_DEV_FEATURES', m.supported_features)
        if 'VDPA_ATTR_DEV_FEATURES' in attrs:
            # vdpa_nl_cmd_dev_add_set_doit checks a given attribute's
            # feature bit only against provisioned features (and F_MQ
            # only for more than one pair); without DEV_FEATURES the
            # device offers all its management device supports.
            missing = 0
            for attr, bit in (('VDPA_ATTR_DEV_NET_CFG_MACADDR', model.F_MAC),
                              ('VDPA_ATTR_DEV_NET_CFG_MTU', model.F_MTU)):
                if attr in attrs and not features & bit:
                    missing |= bit
            if (attrs.get('VDPA_ATTR_DEV_NET_CFG_MAX_VQP', 1) > 1
                    and not features & model.F_MQ):
                missing |= model.F_MQ
            if missing:
                raise NetlinkError(
                    errno.EINVAL, 'vdpa: Missing features 0x%x for '
                    'provided attributes' % missing)
        if features & ~m.supported_features:
            # The simulators' dev_add refuses features they lack.
            raise NetlinkError(errno.EINVAL)
        if mtu is not None and m.max_mtu is not None and mtu > m.max_mtu:
            raise NetlinkError(errno.EINVAL)
        parent = (os.path.join(self.sys, 'devices', 'pci0000:00', m.name)
                  if m.bus == 'pci' else os.path.join(self.sys, 'devices'))
        path = os.path.join(parent, name)
        os.makedirs(path)
        with open(path + '/driver_override', 'w') as f:
            f.write('(null)\n')
        os.symlink(path, os.path.join(self.bus, 'devices', name))
        d = FakeDevice(name, m, attrs.get('VDPA_ATTR_DEV_NET_CFG_MACADDR',
                                          '00:00:00:00:00:00'),
                       mtu or 1500,
                       attrs.get('VDPA_ATTR_DEV_NET_CFG_MAX_VQP', 1),
                       features, path)
        self.devices[name] = d
        self.probe(d)

    def _dev_del(self, d):
        self.unbind(d)
        os.unlink(os.path.join(self.bus, 'devices', d.name))
        os.unlink(d.path + '/driver_override')
        os.rmdir(d.path)
        del self.devices[d.name]

    # ------------------------------------------------------------ the bus
    def probe(self, d):
        """Bind an unbound device: the override, else the first driver."""
        if d.driver is not None:
            return
        if d.override is not None:
            driver = d.override if d.override in self.drivers else None
        else:
            driver = self.drivers[0] if self.drivers else None
        if driver is not None:
            self.attach(d, driver)

    def attach(self, d, driver):
        d.driver = driver
        os.symlink(os.path.join(self.bus, 'drivers', driver),
                   d.path + '/driver')
        if driver == sysfs.VHOST_VDPA:
            used = {x.vhost_index for x in self.devices.values()}
            d.vhost_index = min(set(range(len(used) + 1)) - used)
            child = os.path.join(d.path, 'vhost-vdpa-%d' % d.vhost_index)
            os.mkdir(child)
            node = self.node(d)
            open(node, 'w').close()
            # A regular file's st_rdev is 0, so the fake node is "0:0".
            with open(child + '/dev', 'w') as f:
                f.write('%d:%d\n' % (os.major(os.stat(node).st_rdev),
                                     os.minor(os.stat(node).st_rdev)))

    def unbind(self, d):
        """Detach; vhost_vdpa's remove waits until the node is closed.

        As on 6.12: __device_release_driver drops the ``driver`` link
        first, then vhost_vdpa_remove deletes the chardev (the
        ``vhost-vdpa-N`` child and the /dev node) and only then waits for
        the holder. While it waits, the device looks unbound.
        """
        driver = d.driver
        if driver is not None:
            os.unlink(d.path + '/driver')
        if driver == sysfs.VHOST_VDPA:
            child = os.path.join(d.path, 'vhost-vdpa-%d' % d.vhost_index)
            os.unlink(child + '/dev')
            os.rmdir(child)
            os.unlink(self.node(d))
            with self.cond:
                if not self.cond.wait_for(lambda: d.holder is None,
                                          BLOCK_LIMIT):
                    raise AssertionError('fake kernel blocked on %s for '
                                         'good' % d.name)
            d.vhost_index = None
        d.driver = None

    def node(self, d):
        return os.path.join(self.dev, 'vhost-vdpa-%d' % d.vhost_index)

    # ----------------------------------------------------------- processes
    def open_chardev(self, name, pid=4242, cmdline=('qemu-system-x86_64',
                                                    '-name', 'guest')):
        """A process (QEMU) opens the device's node: exclusive."""
        d = self.devices[name]
        if d.vhost_index is None:
            raise OSError(errno.ENOENT, 'no vhost-vdpa node')
        with self.cond:
            if d.holder is not None:
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
            d.holder = pid
        pdir = os.path.join(self.proc, str(pid))
        os.makedirs(pdir + '/fd', exist_ok=True)
        with open(pdir + '/cmdline', 'wb') as f:
            f.write(b'\0'.join(c.encode() for c in cmdline) + b'\0')
        os.symlink(self.node(d), pdir + '/fd/3')

    def close_chardev(self, name):
        d = self.devices[name]
        if d.holder is None:
            return  # released at cleanup already
        os.unlink(os.path.join(self.proc, str(d.holder), 'fd', '3'))
        with self.cond:
            d.holder = None
            self.cond.notify_all()


class FakeSysfs(sysfs.VdpaSysfs):
    """VdpaSysfs on the fake tree; the fake kernel reacts to writes."""

    def __init__(self, kernel):
        super().__init__(kernel.sys, kernel.dev, kernel.proc)
        self.kernel = kernel

    def _write(self, path, value):
        k = self.kernel
        rel = os.path.relpath(path, k.bus)
        parts = rel.split(os.sep)
        if parts[0] == 'devices' and parts[-1] == 'driver_override':
            # driver_set_override keeps what comes before a newline.
            value = value.split('\n')[0]
            k.devices[parts[1]].override = value or None
            with open(path, 'w') as f:
                f.write((value or '(null)') + '\n')
        elif rel == 'drivers_probe':
            k.probe(k.by_sysfs_name(value))
        elif parts[0] == 'drivers' and parts[-1] in ('bind', 'unbind'):
            d = k.by_sysfs_name(value)
            if parts[-1] == 'unbind':
                if d.driver != parts[1]:
                    raise OSError(errno.ENODEV, 'not bound to this driver')
                k.unbind(d)
            else:
                if d.override not in (None, parts[1]):
                    raise OSError(errno.ENODEV, 'driver_override mismatch')
                if d.driver is not None:
                    raise OSError(errno.EBUSY, 'already bound')
                k.attach(d, parts[1])
        else:
            super()._write(path, value)

    def _ioctl(self, fd, request, buf):
        """vhost-vdpa's read ioctls, for the device open on ``fd``."""
        path = os.readlink('/proc/self/fd/%d' % fd)
        for d in self.kernel.devices.values():
            if d.vhost_index is not None and self.kernel.node(d) == path:
                features, groups, spaces = d.mgmtdev.backend
                answers = {
                    vhost.VHOST_GET_BACKEND_FEATURES: struct.pack(
                        '=Q', features),
                    vhost.VHOST_VDPA_GET_GROUP_NUM: struct.pack('=I', groups),
                    vhost.VHOST_VDPA_GET_AS_NUM: struct.pack('=I', spaces)}
                if request in answers and len(buf) == len(answers[request]):
                    return answers[request]
        # not a vhost-vdpa node, or a request it does not know
        raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))

    def _open_exclusive(self, path):
        for d in self.kernel.devices.values():
            if d.vhost_index is not None and self.kernel.node(d) == path:
                if d.holder is not None:
                    raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        return super()._open_exclusive(path)


class FakeVdpaSocket:
    """Speaks to FakeKernel with real pyroute2-encoded vdpa messages."""

    prid = FAMILY_ID

    def __init__(self, kernel):
        self.kernel = kernel
        self.closed = False

    def bind(self, groups=0, **kwarg):
        if not self.kernel.loaded:
            raise NetlinkError(errno.ENOENT)
        self.prid = self.kernel.family_id

    def close(self):
        self.closed = True

    def nlm_request(self, msg, msg_type, msg_flags):
        if not self.kernel.loaded or msg_type != self.kernel.family_id:
            # genetlink: no family with that id.
            raise NetlinkError(errno.ENOENT)
        msg['header']['type'] = msg_type
        msg['header']['flags'] = msg_flags
        msg.encode()
        wire = netlink.vdpamsg(msg.data)
        wire.decode()
        dump = bool(msg_flags & 0x300)
        replies = self.kernel.handle(wire['cmd'], dict(wire['attrs']), dump)
        # Returned as the real socket returns the kernel's replies: on the
        # wire, for the client to decode.
        out = []
        for cmd, attrs in replies:
            data = self._encoded(cmd, attrs)
            out.append((data, 0, len(data)))
        return iter(out)

    def _encoded(self, cmd, attrs):
        """The reply on the wire, encoded once per distinct reply.

        The kernel builds its replies in C; encoding each one again with
        pyroute2 would make the fake, not the client, the cost the
        benchmarks measure.
        """
        try:
            key = (cmd, self.prid, tuple(attrs))
            hash(key)
        except TypeError:  # an attribute value that is a list
            key = (cmd, self.prid, repr(attrs))
        data = self.kernel.wire_cache.get(key)
        if data is None:
            r = netlink.vdpamsg()
            r['cmd'] = cmd
            r['version'] = netlink.GENL_VERSION
            r['attrs'] = attrs
            r['header']['type'] = self.prid
            r.encode()
            data = self.kernel.wire_cache[key] = bytes(r.data)
        return data

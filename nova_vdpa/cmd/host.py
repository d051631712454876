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

"""What ``nova-vdpa-status`` reads from this host, in one place.

Each reader is built on first use and closed by :meth:`Host.close`, so a
command reads only what it shows. Everything is read back from the kernel,
libvirt and Open vSwitch; nothing is remembered between runs. Tests replace
single readers (``netdevs`` for the PCI walk netdevsim cannot give).
"""

import dataclasses
import os
from typing import Any
import warnings

from oslo_config import cfg

from nova_vdpa.compute import releases
from nova_vdpa import conf as vdpa_conf
from nova_vdpa import exception
from nova_vdpa.kernel import model
from nova_vdpa.kernel import netdev as netdev_mod
from nova_vdpa.kernel import netlink
from nova_vdpa.kernel import sysfs as sysfs_mod
from nova_vdpa.network import checks
from nova_vdpa.network import flows as flows_mod
from nova_vdpa.network import mechanism as mechanism_mod
from nova_vdpa.network import ovn as ovn_mod
from nova_vdpa.network import ovsdb as ovsdb_mod

Outcome = tuple[int, str]

with warnings.catch_warnings():
    # The allocator imports oslo.privsep, which imports eventlet, which
    # warns about its own deprecation on import (a plain Warning): not for
    # operators' eyes.
    warnings.simplefilter('ignore')
    from nova_vdpa import allocator as allocator_mod


def _version(number: int) -> str:
    return '%d.%d.%d' % (number // 1000000, number // 1000 % 1000,
                         number % 1000)


class Host:
    """This host's vdpa, libvirt and OVS state, read on demand.

    :param conf: parsed options (``nova-vdpa-status``'s and
        ``[nova_vdpa]``).
    """

    def __init__(self, conf: cfg.ConfigOpts, sys_root: str = '/sys') -> None:
        self.conf = conf
        self.sysfs = sysfs_mod.VdpaSysfs(sys_root=sys_root)
        self.netdevs = netdev_mod.Netdevs(sys_root=sys_root)
        self._allocator: allocator_mod.Allocator | None = None
        self._ovs: ovsdb_mod.OvsdbReader | None = None
        self._ovs_error: str | None = None
        self._network: list[checks.CheckResult] | None = None

    # ------------------------------------------------------------ readers
    @property
    def allocator(self) -> allocator_mod.Allocator:
        if self._allocator is None:
            self._allocator = allocator_mod.Allocator.from_conf(self.conf)
        return self._allocator

    def ovs(self) -> ovsdb_mod.OvsdbReader | None:
        """The OVSDB reader, or None (and :attr:`_ovs_error`)."""
        if self._ovs is None and self._ovs_error is None:
            try:
                self._ovs = ovsdb_mod.OvsdbReader(self.conf.ovsdb_connection)
            except exception.OvsdbUnavailable as e:
                self._ovs_error = e.message
        return self._ovs

    def ovn_rundir(self) -> str | None:
        """``--ovn-rundir``, else ``[nova_vdpa] ovn_rundir`` (may be None)."""
        given = getattr(self.conf, 'ovn_rundir', None)
        if given:
            return given
        try:
            vdpa_conf.register_opts(self.conf)
            return getattr(self.conf, vdpa_conf.vdpa_group.name).ovn_rundir
        except (AttributeError, cfg.Error):
            return None  # a conf without nova-vdpa's group (tests)

    def close(self) -> None:
        if self._ovs is not None:
            self._ovs.close()
        if self._allocator is not None:
            self._allocator.close()

    def vfs(self) -> dict[str, model.ManagementDevice]:
        return self.allocator.vf_management_devices()

    # ------------------------------------------------------------- checks
    def kernel(self) -> Outcome:
        try:
            with netlink.VdpaClient() as client:
                client.list_management_devices()
        except exception.VdpaKernelError as e:
            return checks.Status.FAILURE, e.message
        return checks.Status.SUCCESS, 'the vdpa generic netlink family ' \
            'answers'

    def vhost_vdpa(self) -> Outcome:
        path = os.path.join(self.sysfs.bus, 'drivers', sysfs_mod.VHOST_VDPA)
        if os.path.isdir(path):
            return checks.Status.SUCCESS, 'vhost_vdpa is loaded'
        return (checks.Status.FAILURE, 'the vhost_vdpa driver is not '
                'loaded: modprobe vhost_vdpa (and list it in '
                '/etc/modules-load.d/)')

    def hypervisor(self) -> Outcome:
        try:
            import libvirt
        except ImportError:
            return (checks.Status.WARNING, 'libvirt-python is not '
                    'installed here: versions not checked')
        try:
            conn = libvirt.openReadOnly(self.conf.libvirt_uri)
            try:
                lv, qemu = conn.getLibVersion(), conn.getVersion()
            finally:
                conn.close()
        except libvirt.libvirtError as e:
            return (checks.Status.WARNING, 'libvirt at %s did not answer '
                    '(%s): versions not checked'
                    % (self.conf.libvirt_uri, e.get_error_message()))
        text = 'libvirt %s, QEMU %s' % (_version(lv), _version(qemu))
        with warnings.catch_warnings():
            # designer imports nova's libvirt driver, and so eventlet
            # (see the allocator import above).
            warnings.simplefilter('ignore')
            from nova_vdpa.libvirt import designer
        if lv < designer.MIN_LIBVIRT_VDPA or qemu < designer.MIN_QEMU_VDPA:
            return checks.Status.FAILURE, '%s: vdpa interfaces need ' \
                'libvirt >= %s and QEMU >= %s' % (
                    text, _version(designer.MIN_LIBVIRT_VDPA),
                    _version(designer.MIN_QEMU_VDPA))
        return checks.Status.SUCCESS, text

    def management_devices(self) -> Outcome:
        try:
            vfs = self.vfs()
        except exception.NovaVdpaException as e:
            return checks.Status.FAILURE, e.message
        if not vfs:
            return (checks.Status.WARNING, 'no network management device '
                    'is allowed ([nova_vdpa] management_devices) or present '
                    '(load mlx5_vdpa, or create SR-IOV VFs)')
        return checks.Status.SUCCESS, '%d VF(s): %s' % (
            len(vfs), ', '.join(sorted(vfs)))

    def network_results(self) -> list[checks.CheckResult]:
        """The offload checks, run once per command."""
        if self._network is None:
            try:
                vfs = sorted(self.vfs())
            except exception.NovaVdpaException:
                vfs = []
            self._network = checks.host_summary(
                vfs, self.ovs(), self.netdevs,
                bridge=self.conf.integration_bridge,
                ovs_error=self._ovs_error,
                ovn_rundir=self.ovn_rundir())
        return self._network

    # ---------------------------------------------------------- listings
    def _instances(self) -> dict[str, str] | None:
        """chardev -> domain text, or None when libvirt cannot say."""
        domains = self._domains()
        if domains is None:
            return None
        return {chardev: text for chardev, (text, _) in domains.items()}

    def _domains(self) -> dict[str, tuple[str, bool]] | None:
        """chardev -> (domain text, running or paused); None if unknown.

        From the domains' ``<interface type='vdpa'><source dev>``: libvirt
        names the guest of a device even where /proc cannot (QEMU runs as
        another user), and no node is opened to find out.
        """
        try:
            import libvirt
            from lxml import etree
        except ImportError:
            return None
        try:
            conn = libvirt.openReadOnly(self.conf.libvirt_uri)
        except libvirt.libvirtError:
            return None
        found = {}
        try:
            for dom in conn.listAllDomains():
                xml = etree.fromstring(dom.XMLDesc(0))
                state = dom.state()[0]
                alive = state in (libvirt.VIR_DOMAIN_RUNNING,
                                  libvirt.VIR_DOMAIN_PAUSED,
                                  libvirt.VIR_DOMAIN_BLOCKED)
                for src in xml.iterfind(
                        "./devices/interface[@type='vdpa']/source"):
                    found[src.get('dev') or ''] = ('%s (%s)' % (
                        dom.name(), dom.UUIDString()), alive)
        finally:
            conn.close()
        return found

    def devices(self) -> list[dict[str, Any]]:
        """One row per device of ours: who holds it, and orphan candidates.

        ``state`` is ``in use`` (a running or paused guest names it),
        ``kept`` (a guest that is shut off names it: its port is still
        bound here), ``release waits for <process>`` (no guest names it
        but a process holds its node: a deferred release, such as a paused
        guest after a detach), or ``orphan candidate`` (no guest names it
        and no holder is seen: nova-compute's start-up reconciliation
        deletes it unless a port expects it).
        """
        owned = self.allocator.owned_devices()
        domains = self._domains()
        rows = []
        for dev in sorted(owned, key=lambda d: d.name):
            chardev = self._chardev(dev.name)
            named = (domains or {}).get(chardev or '')
            row: dict[str, Any] = {
                'device': dev.name, 'port': _port_of(dev.name),
                'mgmtdev': dev.mgmtdev, 'chardev': chardev,
                'instance': named[0] if named else None}
            if domains is None:
                row['state'] = 'unknown (libvirt did not answer)'
            elif named and named[1]:
                row['state'] = 'in use'
            elif named:
                row['state'] = 'kept (its guest is shut off)'
            else:
                holders = self._holders(chardev, dev.name)
                row['state'] = ('release waits for %s' % holders
                                if holders else 'orphan candidate')
            rows.append(row)
        return rows

    def _holders(self, chardev: str | None, name: str) -> str | None:
        """The processes /proc shows holding ``chardev``, as text."""
        if not chardev:
            return None
        try:
            found = self.sysfs.holders(chardev, name)
        except exception.VdpaSysfsError:
            return None
        return ', '.join('pid %d (%s)' % (h.pid, h.cmdline)
                         for h in found) or None

    def concurrency(self) -> Outcome:
        """nova-compute's concurrency mode; nova-vdpa runs in both.

        As Nova decides it for nova-compute:
        ``OS_NOVA_DISABLE_EVENTLET_PATCHING`` in the running service's
        environment, else ``[DEFAULT] concurrency_backend`` where Nova has
        it, else the release's default
        (:func:`nova_vdpa.compute.releases.default_mode`).
        """
        env, where = _compute_environment(self.sysfs.proc_root)
        backend = getattr(self.conf, 'concurrency_backend', 'auto')
        if env:
            native = env.lower() in ('1', 'true', 'yes')
            how = 'OS_NOVA_DISABLE_EVENTLET_PATCHING=%s in %s' % (env, where)
        elif backend != 'auto':
            native = backend == 'threading'
            how = '[DEFAULT] concurrency_backend = %s (%s)' % (backend, where)
        else:
            version = _nova_version()
            native = releases.default_mode(version) == 'threading'
            how = 'the default of Nova %s (%s)' % (version or '?', where)
        return checks.Status.SUCCESS, '%s (%s); nova-vdpa runs in both' % (
            'native threads' if native else 'eventlet', how)

    def _devices(self) -> tuple[list[model.VdpaDevice],
                                dict[str, model.DeviceConfig]]:
        with netlink.VdpaClient() as client:
            devices = client.list_devices()
            configs = {c.name: c for c in client.list_configs()}
        return devices, configs

    def _chardev(self, name: str) -> str | None:
        try:
            return self.sysfs.chardev(name)
        except exception.NovaVdpaException:
            return None

    def _vfs_by_mgmtdev(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for vf, mgmt in sorted(self.vfs().items()):
            out.setdefault(mgmt.handle, []).append(vf)
        return out

    def inventory(self) -> list[dict[str, Any]]:
        """One row per vDPA device on our VFs, and per VF without one."""
        by_mgmt = self._vfs_by_mgmtdev()
        devices, configs = self._devices()
        instances = self._instances()
        rows = []
        used = set()
        for dev in sorted(devices, key=lambda d: d.name):
            if dev.mgmtdev not in by_mgmt:
                continue
            used.add(dev.mgmtdev)
            cfg_ = configs.get(dev.name)
            chardev = self._chardev(dev.name)
            rows.append({
                'vf': ','.join(by_mgmt[dev.mgmtdev]),
                'mgmtdev': dev.mgmtdev, 'device': dev.name,
                'chardev': chardev,
                'mac': cfg_.mac if cfg_ else None,
                'mtu': cfg_.mtu if cfg_ else None,
                'port': _port_of(dev.name),
                'instance': (instances or {}).get(chardev or '', 'unknown')
                if instances is not None else 'unknown'})
        for mgmt, vfs in by_mgmt.items():
            if mgmt not in used:
                rows.append({'vf': ','.join(vfs), 'mgmtdev': mgmt})
        return rows

    def ports(self) -> list[dict[str, Any]]:
        """One row per allocated port (a device of ours)."""
        owned = self.allocator.owned_devices()
        if not owned:
            return []
        by_mgmt = self._vfs_by_mgmtdev()
        _, configs = self._devices()
        ovs = self.ovs()
        if ovs is None:
            raise exception.OvsdbUnavailable(
                connection=self.conf.ovsdb_connection,
                reason=self._ovs_error or 'unreachable')
        # ML2/OVS tunnels on br-tun; ML2/OVN's Geneve ports on br-int.
        detected = mechanism_mod.detect(ovs, self.conf.integration_bridge)
        tunnels = [ovn_mod.tunnel_view(t) for t in ovs.tunnel_ports(
            detected.bridge if detected.is_ovn else self.conf.tunnel_bridge)]
        try:
            ctl: str | None = flows_mod.control_socket(self.conf.ovs_rundir)
        except exception.OvsUnixctlError:
            ctl = None
        rows = []
        traffic = self.traffic([d.name for d in owned])
        for dev in sorted(owned, key=lambda d: d.name):
            port_id = _port_of(dev.name)
            vfs = by_mgmt.get(dev.mgmtdev, [])
            row: dict[str, Any] = {'port': port_id, 'device': dev.name,
                                   'vf': ','.join(vfs) or None,
                                   'traffic': traffic[dev.name],
                                   'mechanism': detected.mechanism.label,
                                   'tunnels': tunnels, 'flows': []}
            rows.append(row)
            if len(vfs) != 1:
                row['representor'] = 'unknown (VF ambiguous)'
                continue
            found, vf_port = checks.locate(vfs[0], self.netdevs)
            rep = (checks.check_representor(vf_port, self.netdevs)
                   if vf_port else found)
            row['representor'] = rep.detail or rep.message
            if not rep.detail:
                continue
            iface = ovs.interface(rep.detail)
            row['ofport'] = iface.ofport if iface else None
            row['tag'] = iface.tag if iface else None
            mac = configs[dev.name].mac if dev.name in configs else None
            row['plugged'] = checks.verify_plugged(
                ovs, port_id or '', mac or '', rep.detail,
                detected.bridge, detected.mechanism).message
            row['programmed'] = checks.check_programmed(
                ovs, port_id or '', rep.detail, detected.mechanism).message
            if ctl:
                row['flows'] = [flows_mod.as_dict(f) for f in
                                flows_mod.representor_flows(ctl, rep.detail)]
        return rows

    @staticmethod
    def traffic(names: list[str]) -> dict[str, dict[str, Any]]:
        """Each device's packet counters, or why there are none.

        :returns: device name -> the counters the driver reports
            (``rx_packets``, ``tx_drops``, ...: those of
            :class:`~nova_vdpa.kernel.model.DeviceTraffic` that are not
            None), or ``{'unavailable': reason}``.
        """
        out: dict[str, dict[str, Any]] = {}
        with netlink.VdpaClient() as client:
            for name in names:
                try:
                    counters = client.get_traffic(name)
                except exception.VdpaFeaturesNotNegotiated:
                    out[name] = {'unavailable': 'no negotiated features yet '
                                 '(no guest has started the device)'}
                    continue
                except exception.VdpaAttributeNotSupported:
                    out[name] = {'unavailable': 'the driver reports no '
                                 'statistics'}
                    continue
                except exception.VdpaDeviceNotFound:
                    out[name] = {'unavailable': 'the device is gone'}
                    continue
                except exception.VdpaPermissionDenied:
                    out[name] = {'unavailable': 'reading counters needs '
                                 'CAP_NET_ADMIN (run as root)'}
                    continue
                values = {k: v for k, v in
                          dataclasses.asdict(counters).items()
                          if k != 'name' and v is not None}
                out[name] = values or {
                    'unavailable': 'the driver reports no packet counters'}
        return out


def _nova_version() -> str | None:
    """This Python's Nova version, None without Nova."""
    try:
        return releases.installed()
    except ImportError:
        return None


def _compute_environment(proc_root: str) -> tuple[str | None, str]:
    """``OS_NOVA_DISABLE_EVENTLET_PATCHING`` of the running nova-compute.

    :returns: its value (None when unset or unreadable) and where it was
        looked for, as text.
    """
    try:
        pids = [p for p in os.listdir(proc_root) if p.isdigit()]
    except OSError:
        return None, 'no /proc to find nova-compute in'
    for pid in pids:
        try:
            with open(os.path.join(proc_root, pid, 'cmdline'), 'rb') as f:
                cmdline = f.read().split(b'\0')
        except OSError:
            continue
        if not any(os.path.basename(a) == b'nova-compute'
                   for a in cmdline[:2]):
            continue
        try:
            with open(os.path.join(proc_root, pid, 'environ'), 'rb') as f:
                environ = f.read().split(b'\0')
        except OSError:
            return None, ('the environment of nova-compute (pid %s) is '
                          'not readable' % pid)
        for entry in environ:
            key, _, value = entry.partition(b'=')
            if key == b'OS_NOVA_DISABLE_EVENTLET_PATCHING':
                return value.decode(errors='replace'), \
                    'nova-compute (pid %s)' % pid
        return None, 'unset in nova-compute (pid %s)' % pid
    return None, 'no nova-compute process seen'


def _port_of(name: str) -> str | None:
    if allocator_mod.is_ours(name):
        return name[len(allocator_mod.DEVICE_PREFIX):]
    return None

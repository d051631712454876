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

"""``nova-vdpa-status``: is this compute host ready, and what does it run?

``check``
    oslo.upgradecheck checks, table or ``--format json``: the Nova release
    found and whether nova-vdpa supports it, whether Nova's driver loader
    finds nova-vdpa (:mod:`nova_vdpa.compute.install`), the vdpa kernel
    family, the vhost_vdpa driver, libvirt and QEMU versions, management
    devices, nova-compute's concurrency mode (native threads supported,
    eventlet not), the Neutron mechanism (ML2/OVS or ML2/OVN, read from
    Open vSwitch), Open vSwitch hw-offload and the integration bridge,
    switchdev, representors and TC offload; on an OVN chassis also the
    chassis settings, ovn-controller's southbound connection (its
    unixctl ``connection-status``), the encapsulation and its offload.
    Exit status 0 / 1 / 2 (success, warning, failure), 255 for an
    unexpected error, as oslo.upgradecheck does.
``inventory``
    one row per VF and vDPA device: management device, device, chardev,
    MAC, MTU, Neutron port (from our device name), instance (from libvirt,
    ``unknown`` when libvirt cannot say).
``devices``
    one row per device of ours: its port, instance and state - ``in use``,
    ``kept`` (its guest is shut off), ``release waits for <process>`` (no
    guest names it but a process holds it: a deferred release), or
    ``orphan candidate`` (no guest names it, no holder seen). Guests are
    found through libvirt's domains, holders through /proc; no node is
    opened.
``ports``
    one row per allocated port: its device's rx/tx packets, drops, errors
    and overruns where the driver reports them (or why they cannot be
    read: nothing negotiated features yet), representor, ``ofport``, the
    VLAN tag the OVS agent set, whether the mechanism programmed the port
    (the agent's tag; OVN's ``ovn-installed``), the tunnel ports (br-tun's
    on ML2/OVS, br-int's Geneve ports with their remote chassis on
    ML2/OVN), and the representor's datapath flows with their layer and
    offload state (from ovs-vswitchd's unixctl socket).

Nothing allocated, or nothing reachable, is one line, not an empty table.
Options come from nova.conf (``[nova_vdpa]``) and the command line.
"""

import json
import sys
import types
from typing import Any, Callable

from oslo_config import cfg

from nova_vdpa.cmd import host as host_mod
from nova_vdpa.compute import install
from nova_vdpa.compute import overrides
from nova_vdpa.compute import releases
from nova_vdpa import exception
from nova_vdpa.network import checks
from nova_vdpa.network import flows

SUCCESS, WARNING, FAILURE, ERROR = 0, 1, 2, 255

CLI_OPTS = [
    cfg.StrOpt('ovsdb-connection',
               default='unix:/run/openvswitch/db.sock',
               help='The Open vSwitch database (as os-vif\'s [os_vif_ovs] '
                    'ovsdb_connection).'),
    cfg.StrOpt('ovs-rundir', default=None,
               help='Open vSwitch run folder with ovs-vswitchd\'s pid file '
                    'and control socket (default $OVS_RUNDIR or '
                    '/run/openvswitch).'),
    cfg.StrOpt('integration-bridge', default='br-int',
               help='The OVS agent\'s integration bridge.'),
    cfg.StrOpt('tunnel-bridge', default='br-tun',
               help='The OVS agent\'s tunnel bridge.'),
    cfg.StrOpt('ovn-rundir', default=None,
               help='ovn-controller\'s run folder with its pid file and '
                    'control socket (default [nova_vdpa] ovn_rundir, '
                    '$OVN_RUNDIR or /run/ovn).'),
    cfg.StrOpt('libvirt-uri', default='qemu:///system',
               help='libvirt connection for versions and instances.'),
]

#: Nova's own option (nova.monkey_patch reads it the same way), for the
#: concurrency check
CONCURRENCY_OPT = cfg.StrOpt('concurrency_backend', default='auto',
                             choices=['auto', 'threading', 'eventlet'])


def _result(code: int, details: str) -> Any:
    from oslo_upgradecheck import upgradecheck
    return upgradecheck.Result(upgradecheck.Code(code), details)


def _group(results: list[checks.CheckResult], empty: str,
           empty_code: int = WARNING) -> Any:
    """Several network results as one upgradecheck Result."""
    if not results:
        return _result(empty_code, empty)
    status = checks.worst(results)
    shown = [r for r in results if r.status == status]
    return _result(int(status), '; '.join(
        '%s: %s' % (r.subject, r.message) for r in shown))


def nova_release() -> tuple[int, str]:
    """The Nova release this Python has, and whether we support it."""
    try:
        version = overrides.nova_version()
    except ImportError:
        return FAILURE, 'this Python (%s) has no Nova' % sys.prefix
    try:
        overrides.check_release(version)
    except overrides.NovaIncompatible as e:
        return FAILURE, e.message
    release = releases.find(version)
    assert release is not None  # check_release passed
    return SUCCESS, 'Nova %s (%s): supported (nova-vdpa supports %s)' % (
        version, release.series,
        ', '.join(r + '.x' for r in overrides.SUPPORTED_NOVA))


def installation() -> tuple[int, str]:
    """Whether Nova's driver loader finds this nova-vdpa."""
    found = install.layout()
    reason = install.problem(found)
    if reason is not None:
        return FAILURE, reason
    reason = install.mixed(found)
    if reason is not None:
        return WARNING, reason
    return SUCCESS, '%s is %s' % (install.SHIM, found.shim)


def upgrade_commands(host: host_mod.Host) -> Any:
    """The oslo.upgradecheck commands over ``host``."""
    from oslo_upgradecheck import upgradecheck

    def net(name: str, empty: str,
            empty_code: int = WARNING) -> Callable[[Any], Any]:
        return lambda self: _group(
            [r for r in host.network_results() if r.name in name.split()],
            empty, empty_code)

    class Checks(upgradecheck.UpgradeCommands):
        display_title = 'nova-vdpa status'
        _upgrade_checks = (
            ('Nova release', lambda self: _result(*nova_release())),
            ('nova-vdpa installation',
             lambda self: _result(*installation())),
            ('vdpa kernel support', lambda self: _result(*host.kernel())),
            ('vhost_vdpa driver', lambda self: _result(*host.vhost_vdpa())),
            ('libvirt and QEMU', lambda self: _result(*host.hypervisor())),
            ('management devices',
             lambda self: _result(*host.management_devices())),
            ('concurrency mode', lambda self: _result(*host.concurrency())),
            ('Open vSwitch hw-offload',
             net('ovsdb mechanism hw-offload integration-bridge',
                 'not checked')),
            ('OVN chassis',
             net('ovn-chassis ovn-controller ovn-encap ovn-encap-offload',
                 'not an OVN chassis (no ovn-remote in Open vSwitch)',
                 SUCCESS)),
            ('switchdev', net('switchdev', 'no VF to check')),
            ('representors', net('uplink representor', 'no VF to check')),
            ('hw-tc-offload', net('hw-tc-offload', 'no VF to check')),
        )

    return Checks()


def cmd_check(host: host_mod.Host, fmt: str) -> int:
    from oslo_upgradecheck import upgradecheck

    # oslo.upgradecheck's check() picks JSON from its module's CONF.
    upgradecheck.CONF = types.SimpleNamespace(  # type: ignore
        command=types.SimpleNamespace(json=fmt == 'json'))
    return int(upgrade_commands(host).check())


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    import prettytable

    t = prettytable.PrettyTable(columns)
    t.align = 'l'
    for row in rows:
        t.add_row([_cell(row.get(c)) for c in columns])
    return str(t)


def _cell(value: Any) -> str:
    if value is None:
        return '-'
    if isinstance(value, list):
        return '\n'.join(_cell(v) for v in value) or '-'
    return str(value)


INVENTORY_COLUMNS = ['vf', 'mgmtdev', 'device', 'chardev', 'mac', 'mtu',
                     'port', 'instance']
DEVICES_COLUMNS = ['device', 'port', 'mgmtdev', 'chardev', 'instance',
                   'state']
PORTS_COLUMNS = ['port', 'vf', 'traffic', 'representor', 'ofport', 'tag',
                 'plugged', 'programmed', 'tunnels', 'flows']


def _listing(rows: list[dict[str, Any]], columns: list[str], fmt: str,
             empty: str) -> int:
    if not rows:
        print(empty)
        return SUCCESS
    if fmt == 'json':
        print(json.dumps(rows, indent=1, sort_keys=True))
    else:
        print(_table(rows, columns))
    return SUCCESS


def cmd_inventory(host: host_mod.Host, fmt: str) -> int:
    return _listing(host.inventory(), INVENTORY_COLUMNS, fmt,
                    'No VF can get a vDPA device on this host '
                    '(no network management device).')


def cmd_devices(host: host_mod.Host, fmt: str) -> int:
    return _listing(host.devices(), DEVICES_COLUMNS, fmt,
                    'No vDPA device of nova-vdpa on this host.')


def traffic_summary(counters: dict[str, Any]) -> list[str]:
    """A device's counters as table lines: rx, then tx.

    ``rx 12 pkts 0 drops 0 errors 0 overruns`` / ``tx 12 pkts 0 drops 0
    errors``; counters the driver does not report are left out.
    """
    if 'unavailable' in counters:
        return ['not readable: %s' % counters['unavailable']]
    lines = []
    for way in ('rx', 'tx'):
        parts = ['%s %s' % (counters['%s_%s' % (way, key)], word)
                 for key, word in (('packets', 'pkts'), ('drops', 'drops'),
                                   ('errors', 'errors'),
                                   ('overruns', 'overruns'))
                 if '%s_%s' % (way, key) in counters]
        if parts:
            lines.append('%s %s' % (way, ' '.join(parts)))
    return lines


def cmd_ports(host: host_mod.Host, fmt: str) -> int:
    rows = host.ports()
    if fmt != 'json':
        for row in rows:
            row['flows'] = [flows.summary(flows.Flow(**f))
                            for f in row['flows']]
            row['tunnels'] = ['%s %s%s' % (
                t['name'], t['remote_ip'],
                ' (chassis %s)' % t['chassis'] if t.get('chassis') else '')
                for t in row['tunnels']]
            row['traffic'] = traffic_summary(row.get('traffic') or {})
    return _listing(rows, PORTS_COLUMNS, fmt,
                    'No vdpa port is allocated on this host.')


COMMANDS = {'check': cmd_check, 'inventory': cmd_inventory,
            'devices': cmd_devices, 'ports': cmd_ports}


def _add_parsers(subparsers: Any) -> None:
    for name in COMMANDS:
        p = subparsers.add_parser(name)
        p.add_argument('--format', choices=('table', 'json'),
                       default='table')


def main(argv: list[str] | None = None,
         host_factory: Callable[[cfg.ConfigOpts], host_mod.Host] =
         host_mod.Host) -> int:
    """Entry point of ``nova-vdpa-status``."""
    conf = cfg.ConfigOpts()
    conf.register_cli_opts(CLI_OPTS)
    conf.register_opt(CONCURRENCY_OPT)
    conf.register_cli_opt(cfg.SubCommandOpt(
        'command', handler=_add_parsers,
        help='check, inventory, devices or ports'))
    conf(sys.argv[1:] if argv is None else argv, project='nova')
    command = conf.command.name
    host = host_factory(conf)
    try:
        return COMMANDS[command](host, conf.command.format)
    except exception.NovaVdpaException as e:
        # Nothing reachable: one line an operator can act on.
        print('%s: %s' % (command, e.message))
        return FAILURE
    except Exception as e:
        print('%s failed unexpectedly: %r' % (command, e))
        return ERROR
    finally:
        host.close()


if __name__ == '__main__':
    sys.exit(main())

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

"""Parsing ``dpctl/dump-flows -m`` and finding vswitchd's control socket.

OFFLOADED is a recorded sample in the form OVS prints for a flow a
switchdev NIC (mlx5) holds in hardware: ``offloaded:yes, dp:tc``. The bed's
netdevsim cannot offload flower rules, so that form is only tested here;
IN_TC_NOT_IN_HW was recorded from the real ovs-vswitchd on the bed, where
tests/functional/test_network_offload.py reads it again.
"""

import os

import fixtures

from nova_vdpa import exception
from nova_vdpa.network import flows
from tests.unit import base

REP = 'enp8s0f0npf0vf0'

OFFLOADED = (
    'ufid:1b7e3a2c-5d1f-4c1e-9f0a-3c2d1e0f9a8b, skb_priority(0/0),'
    'skb_mark(0/0),ct_state(0/0),ct_zone(0/0),ct_mark(0/0),ct_label(0/0),'
    'recirc_id(0),dp_hash(0/0),in_port(enp8s0f0npf0vf0),'
    'packet_type(ns=0/0,id=0/0),eth(src=fa:16:3e:12:34:56,'
    'dst=fa:16:3e:65:43:21),eth_type(0x0800),ipv4(src=0.0.0.0/0.0.0.0,'
    'dst=0.0.0.0/0.0.0.0,proto=0/0,tos=0/0,ttl=0/0,frag=no), '
    'packets:1034, bytes:101332, used:0.330s, offloaded:yes, dp:tc, '
    'actions:set(tunnel(tun_id=0x2a,src=10.0.0.1,dst=10.0.0.2,ttl=64,'
    'tp_dst=4789,flags(key))),vxlan_sys_4789\n')

DECAP = (
    'ufid:0a1b2c3d-0000-4000-8000-000000000001, recirc_id(0),'
    'tunnel(tun_id=0x2a,src=10.0.0.2,dst=10.0.0.1,tp_dst=4789,'
    'flags(+key)),in_port(vxlan_sys_4789),eth(src=fa:16:3e:65:43:21,'
    'dst=fa:16:3e:12:34:56),eth_type(0x0800),ipv4(frag=no), '
    'packets:990, bytes:97020, used:0.330s, offloaded:yes, dp:tc, '
    'actions:enp8s0f0npf0vf0\n')

# Recorded on the test bed (OVS 3.1, netdevsim representor, hw-offload on):
# a flower flow netdevsim cannot hold in hardware.
IN_TC_NOT_IN_HW = (
    'ufid:0a7072d6-6b72-40e0-9b12-372fdb6425c3, skb_priority(0/0),'
    'skb_mark(0/0),ct_state(0/0),ct_zone(0/0),ct_mark(0/0),ct_label(0/0),'
    'recirc_id(0),dp_hash(0/0),in_port(eni10npf0vf1),'
    'packet_type(ns=0/0,id=0/0),eth(src=fa:16:3e:00:00:03,'
    'dst=ff:ff:ff:ff:ff:ff),eth_type(0x88b5), packets:0, bytes:0, '
    'used:never, dp:tc, actions:br-int\n')

KERNEL = (
    'ufid:0a1b2c3d-0000-4000-8000-000000000003, recirc_id(0),'
    'in_port(tap0),eth(),eth_type(0x0806), packets:3, bytes:126, '
    'used:1.2s, flags:S, dp:ovs, actions:drop\n')


class TestParse(base.TestCase):

    def test_offloaded_encap(self):
        (f,) = flows.parse_dump(OFFLOADED)
        self.assertEqual(REP, f.in_port)
        self.assertEqual('tc', f.dp)
        self.assertEqual('yes', f.offloaded)
        self.assertEqual((1034, 101332, '0.330s'),
                         (f.packets, f.bytes, f.used))
        self.assertTrue(f.actions.endswith('vxlan_sys_4789'))
        self.assertTrue(f.match.startswith('skb_priority(0/0),'))
        self.assertNotIn('packets', f.match)
        self.assertTrue(f.touches(REP))
        self.assertFalse(f.touches('enp8s0f0npf0vf1'))

    def test_offloaded_decap_touches_the_representor_by_its_action(self):
        (f,) = flows.parse_dump(DECAP)
        self.assertEqual('vxlan_sys_4789', f.in_port)
        self.assertTrue(f.touches(REP))

    def test_tc_not_in_hardware(self):
        (f,) = flows.parse_dump(IN_TC_NOT_IN_HW)
        self.assertEqual(('tc', 'no'), (f.dp, f.offloaded))
        self.assertEqual((0, 'never'), (f.packets, f.used))
        self.assertEqual(('eni10npf0vf1', 'br-int'), (f.in_port, f.actions))
        self.assertEqual('dp:tc offloaded:no packets:0 eni10npf0vf1 -> '
                         'br-int', flows.summary(f))

    def test_without_verbose_fields_the_state_is_unknown(self):
        (f,) = flows.parse_dump('recirc_id(0),in_port(2),eth_type(0x0800),'
                                'ipv4(frag=no), packets:1, bytes:98, '
                                'used:0.1s, actions:3\n')
        self.assertEqual((None, None, '2'), (f.dp, f.offloaded, f.in_port))

    def test_kernel_datapath(self):
        (f,) = flows.parse_dump(KERNEL)
        self.assertEqual(('ovs', 'no'), (f.dp, f.offloaded))
        self.assertEqual('drop', f.actions)

    def test_several_lines_and_noise(self):
        parsed = flows.parse_dump(
            OFFLOADED + '\n' + KERNEL + 'flow-dump from pmd on cpu core: 3\n')
        self.assertEqual([REP, 'tap0'], [f.in_port for f in parsed])
        self.assertEqual([], flows.parse_dump(''))

    def test_unknown_type_refused(self):
        self.assertRaises(ValueError, flows.dump_flows, '/x', 'hw')


class TestControlSocket(base.TestCase):

    def test_from_pid_file(self):
        rundir = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(rundir, 'ovs-vswitchd.pid'), 'w') as f:
            f.write('4242\n')
        self.assertEqual(os.path.join(rundir, 'ovs-vswitchd.4242.ctl'),
                         flows.control_socket(rundir))
        self.useFixture(fixtures.EnvironmentVariable('OVS_RUNDIR', rundir))
        self.assertEqual(os.path.join(rundir, 'ovs-vswitchd.4242.ctl'),
                         flows.control_socket())

    def test_not_running(self):
        rundir = self.useFixture(fixtures.TempDir()).path
        e = self.assertRaises(exception.OvsUnixctlError,
                              flows.control_socket, rundir)
        self.assertIn('ovs-vswitchd is not running', e.message)

    def test_no_listener(self):
        rundir = self.useFixture(fixtures.TempDir()).path
        e = self.assertRaises(exception.OvsUnixctlError, flows.transact,
                              os.path.join(rundir, 'nothing.ctl'),
                              'dpctl/dump-flows', [])
        self.assertIn('nothing.ctl', e.message)

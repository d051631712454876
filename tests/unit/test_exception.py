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

import pickle


from nova_vdpa import exception
from tests.unit import base


class _Example(exception.NovaVdpaException):
    msg_fmt = "vDPA device %(device)s is broken"


class TestException(base.TestCase):

    def test_msg_fmt_formatted_with_kwargs(self):
        e = _Example(device='vdpa0')
        self.assertEqual('vDPA device vdpa0 is broken', str(e))
        self.assertEqual({'device': 'vdpa0'}, e.kwargs)

    def test_rebuilt_from_args_like_privsep(self):
        # oslo.privsep re-raises daemon errors as exc_type(*exc.args).
        e = _Example(device='vdpa0')
        again = type(e)(*e.args)
        self.assertEqual(str(e), str(again))
        self.assertEqual(str(e), again.message)
        self.assertEqual(str(e), str(pickle.loads(pickle.dumps(e))))

    def test_missing_keyword_is_a_programming_error(self):
        self.assertRaises(KeyError, _Example)

    def test_base_message(self):
        self.assertEqual('An unknown nova-vdpa error occurred.',
                         str(exception.NovaVdpaException()))


class TestCallerStringsAreEscaped(base.TestCase):
    """Names, MACs, command lines: never a raw control character."""

    def test_escape_control(self):
        for raw, shown in (
                ('nvdpa-0', 'nvdpa-0'),
                ('vdpa é ü', 'vdpa é ü'),
                ('a\nb\r\tc', 'a\\nb\\r\\tc'),
                ('\x1b[2K\x7f\x85', '\\x1b[2K\\x7f\\x85'),
                # line separator, right-to-left override, NUL
                ('\u2028\u202e\0', '\\u2028\\u202e\\x00'),
                (12, '12')):
            self.assertEqual(shown, exception.escape_control(raw))
            # idempotent: an escaped or repr()'d value is not escaped twice
            self.assertEqual(shown, exception.escape_control(shown))
        self.assertEqual(repr('a\nb'),
                         exception.escape_control(repr('a\nb')))

    def test_messages_escape_every_string_keyword(self):
        e = exception.VdpaDeviceInUse(
            device='vd0\nERROR forged line', mgmtdev='vdpasim_net',
            chardev='/dev/vhost-vdpa-0', pid=7,
            cmdline='qemu \x1b]0;title\x07', action='delete')
        self.assertNotIn('\n', str(e))
        self.assertNotIn('\x1b', str(e))
        self.assertIn('vd0\\nERROR forged line', str(e))
        self.assertIn('qemu \\x1b]0;title\\x07', str(e))
        self.assertEqual('vd0\\nERROR forged line', e.kwargs['device'])
        self.assertEqual(7, e.kwargs['pid'])

    def test_a_finished_message_is_escaped_too(self):
        # What the caller's side rebuilds from the daemon's args.
        self.assertEqual('a\\nb', str(_Example('a\nb')))

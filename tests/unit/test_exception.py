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

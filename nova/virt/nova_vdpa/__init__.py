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

"""Entry module for nova's driver loader.

nova-compute loads ``'nova.virt.' + CONF.compute_driver``, so with
``compute_driver = nova_vdpa.LibvirtVdpaDriver`` it imports this module and
looks the class up here. This tree deliberately has no ``nova/__init__.py``
or ``nova/virt/__init__.py``: the installed package only adds this
sub-package to nova's own ``nova.virt``.
"""

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

"""Sphinx configuration of nova-vdpa's documentation (``tox -e docs``).

The option reference is generated from the ``oslo.config.opts`` entry
point ``nova_vdpa`` (oslo.config's Sphinx extensions), so nova-vdpa must
be installed in the building environment (tox installs it).
"""

extensions = [
    'openstackdocstheme',
    'oslo_config.sphinxext',
    'oslo_config.sphinxconfiggen',
]

# oslo_config.sphinxconfiggen: the sample written at build time, from the
# same generator configuration as `tox -e genconfig` (never committed).
config_generator_config_file = [
    ('../../etc/nova-vdpa/nova-vdpa-config-generator.conf',
     '_static/nova-vdpa'),
]

openstackdocs_repo_name = 'x/nova-vdpa'
openstackdocs_bug_project = 'nova-vdpa'
openstackdocs_bug_tag = 'doc'
openstackdocs_auto_name = False

source_suffix = '.rst'
master_doc = 'index'
project = 'nova-vdpa'
copyright = '2026, nova-vdpa developers'
exclude_patterns = []
pygments_style = 'native'

html_theme = 'openstackdocs'
html_static_path = ['_static']

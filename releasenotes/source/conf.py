# Sphinx configuration for the nova-vdpa release notes (reno).

extensions = [
    'openstackdocstheme',
    'reno.sphinxext',
]

openstackdocs_repo_name = 'x/nova-vdpa'
openstackdocs_bug_project = 'nova-vdpa'
openstackdocs_bug_tag = ''
openstackdocs_auto_name = False

templates_path = ['_templates']
source_suffix = '.rst'
master_doc = 'index'

project = 'nova-vdpa Release Notes'
copyright = '2026, nova-vdpa developers'
release = ''
version = ''

exclude_patterns = []
pygments_style = 'native'

html_theme = 'openstackdocs'
html_static_path = ['_static']
htmlhelp_basename = 'NovaVdpaReleaseNotesdoc'

locale_dirs = ['locale/']

export default {
  page_title: 'nextup',
  tagline: 'Queue management: kiosk, display and operator pages for each site.',
  sites: 'Sites',
  loading: 'Loading…',
  pages: {
    totem: 'Kiosk',
    display: 'Display',
    operator: 'Operator',
    admin: 'Admin',
  },
  pages_hint: {
    totem: 'take a ticket',
    display: 'public screen',
    operator: 'call tickets',
    admin: 'settings and reports',
  },
  howto: {
    title: 'No site yet',
    intro: 'Create a site (tenant) and its first admin with the command line:',
    password: 'The second command reads the admin password from standard input (type it and press Enter).',
    demo: 'Or start the server with a ready-made demo site:',
    after: 'Then reload this page.',
  },
  error: 'Could not load the list of sites.',
  retry: 'Try again',
};
